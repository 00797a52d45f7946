"""The parity gate: real images, preprocessing parity and artifact-vs-PyTorch agreement."""

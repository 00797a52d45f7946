"""Writing each artifact format: ONNX, fp16, int8, TorchScript, torch.export, TTA and metadata."""

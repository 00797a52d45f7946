"""Torch-free evaluation: run a model over a labelled image set and measure it."""

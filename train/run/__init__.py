"""The run folder: its files (weights, run.json), the checkpoint and choosing or resolving folders."""

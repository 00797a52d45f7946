"""Execution providers: strict selection, why a GPU provider is not active, and ``cifar-infer --doctor``."""

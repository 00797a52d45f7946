"""Exit codes of ``cifar-infer`` (documented in docs/runtime.md)."""

from __future__ import annotations

OK = 0  # every input classified (or --doctor found nothing wrong)
SOME_INPUTS_FAILED = 1  # at least one input could not be classified; the others were
USAGE_OR_MODEL = 2  # bad command line, or no usable model (missing, not ONNX, no/bad contract)
PROVIDER_UNAVAILABLE = 3  # the requested execution provider (or onnxruntime itself) is not available
INTERRUPTED = 130  # Ctrl-C

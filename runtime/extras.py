"""The optional extras (pyproject.toml) and the one line a command prints when it needs one that is missing.

A runtime-only install (``pip install 'cifar-edge[cpu]'``) has no torch, torchvision, onnx or safetensors: the
commands that need them (cifar-train, cifar-export, cifar-bench, cifar-eval on PyTorch models or ``--data
cifar10``) say which extra to install instead of ending in a traceback.
"""

from __future__ import annotations

from cifar_edge.runtime.errors import ExitCode

# Top-level import name -> the extra that installs it.
EXTRA_OF_MODULE = {
    "torch": "train",
    "torchvision": "train",
    "onnx": "train",
    "onnxscript": "train",
    "onnx_ir": "train",
    "safetensors": "train",
    "matplotlib": "train",
    "onnxruntime": "cpu",
}
INSTALL_LINE = {
    "train": "pip install 'cifar-edge[train,cpu]'",
    "cpu": "pip install 'cifar-edge[cpu]' (or 'cifar-edge[gpu]' on an NVIDIA GPU)",
}
# onnxruntime missing is "the runtime itself is unavailable" (README, "Exit codes"); the training extra is usage.
EXIT_CODE_OF_EXTRA = {"train": ExitCode.USAGE, "cpu": ExitCode.PROVIDER_UNAVAILABLE}


def missing_module(error: BaseException) -> str | None:
    """The top-level name of the optional module ``error`` (or an error it was raised from) failed to import."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ModuleNotFoundError) and current.name:
            root = current.name.split(".")[0]
            if root in EXTRA_OF_MODULE:
                return root
        current = current.__cause__ or current.__context__
    return None


def missing_extra(error: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit code) when ``error`` comes from a missing optional extra, else None."""
    module = missing_module(error)
    if module is None:
        return None
    extra = EXTRA_OF_MODULE[module]
    return needs_extra(extra, module), EXIT_CODE_OF_EXTRA[extra]


def needs_extra(extra: str, module: str, subject: str | None = None) -> str:
    """'[<subject>] needs the [<extra>] extra (<module> is not installed): pip install ...'."""
    text = f"needs the [{extra}] extra ({module} is not installed): {INSTALL_LINE[extra]}"
    return f"{subject} {text}" if subject else text

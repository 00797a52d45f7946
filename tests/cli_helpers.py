"""Run the console entry points in fresh interpreters, optionally with some modules made unimportable.

``run_cli("cifar-export", run_dir, "--quiet")`` runs what the installed ``cifar-export`` script runs (the ``main`` of
its module, pyproject.toml's ``[project.scripts]``), so tests need no installed scripts and see real exit codes,
signals and stderr. ``block=("torch", "onnx")`` first inserts a meta-path finder that refuses those top-level
modules, as on a runtime-only install (``pip install 'cifar-edge[cpu]'``).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from typing import Any

ENTRY_POINTS = {
    "cifar-train": "cifar_edge.train.cli",
    "cifar-export": "cifar_edge.export.cli",
    "cifar-infer": "cifar_edge.runtime.infer.cli",
    "cifar-eval": "cifar_edge.export.evaluate.cli",
    "cifar-bench": "cifar_edge.export.benchmark.cli",
    "cifar-serve": "cifar_edge.runtime.serve.cli",
}
# What the [train] extra installs (pyproject.toml), by import name.
TRAIN_EXTRA_MODULES = ("torch", "torchvision", "onnx", "onnxscript", "onnx_ir", "safetensors", "matplotlib")

_PROGRAM = """
import importlib, importlib.abc, sys
blocked = frozenset({blocked!r})

class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

if blocked:
    sys.meta_path.insert(0, _NotInstalled())
sys.argv[0] = {command!r}
importlib.import_module({module!r}).main()
"""


def cli_argv(command: str, args: Iterable[Any] = (), block: Iterable[str] = ()) -> list[str]:
    program = _PROGRAM.format(blocked=sorted(block), command=command, module=ENTRY_POINTS[command])
    return [sys.executable, "-c", program, *(str(arg) for arg in args)]


def run_cli(
    command: str, *args: Any, block: Iterable[str] = (), timeout: float = 300, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_argv(command, args, block), capture_output=True, text=True, timeout=timeout, **kwargs)


def error_lines(stderr: str, command: str) -> list[str]:
    """The ``<command>: ...`` lines of stderr (progress and notes may surround them)."""
    return [line for line in stderr.splitlines() if line.startswith(f"{command}:")]

"""What every command does the same way: exit codes and one-line errors, the optional extras a command may
miss, a config dataclass's defaults for the CLIs, and the console entry wrapper around each typer app.

The exit-code table is documented once, in README.md ("Exit codes"); each command's ``--help`` prints the rows it
uses.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import warnings
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from cifar_edge.runtime.common.atomic_io import WriteError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class ExitCode(IntEnum):
    OK = 0
    # The job ran, but part of it failed: some inputs not classified or skipped (infer, eval), an artifact failed
    # its parity gate (export), training diverged (train), a benchmark row failed (bench).
    FAILED = 1
    # Bad command line, or an unusable input: model file, run folder, data tree, contract.
    USAGE = 2
    # The requested execution provider (or onnxruntime itself) is not available.
    PROVIDER_UNAVAILABLE = 3
    # An exporter, converter or quantizer failed, or wrote a file that does not validate.
    TOOL_FAILED = 4
    # An output could not be written: read-only or immutable destination, no permission, disk full, or another
    # process holding its lock. Checked before the work where possible; the previous file is always left intact.
    WRITE_FAILED = 5
    # Ctrl-C (or SIGTERM during training).
    INTERRUPTED = 130


def describe_exit_codes(meanings: dict[ExitCode, str]) -> str:
    """'Exit codes: 0 ...; 2 ...' for a command's --help, from that command's own wording of each row."""
    return "Exit codes: " + "; ".join(f"{int(code)} {text}" for code, text in sorted(meanings.items())) + "."


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_MESSAGE = 300  # characters of a third-party message kept in a one-line error


def first_line(error: BaseException | str, limit: int | None = MAX_MESSAGE) -> str:
    """The first non-empty line of an error message, ANSI escapes removed, whitespace collapsed, cut at ``limit``."""
    text = _ANSI.sub("", str(error))
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    line = lines[0]
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."


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
    "uvicorn": "serve",
    "starlette": "serve",
    "python_multipart": "serve",
    "prometheus_client": "serve",
}
INSTALL_LINE = {
    "train": "pip install 'cifar-edge[train,cpu]'",
    "cpu": "pip install 'cifar-edge[cpu]' (or 'cifar-edge[gpu]' on an NVIDIA GPU)",
    "serve": "pip install 'cifar-edge[serve,cpu]'",
}
# onnxruntime missing is "the runtime itself is unavailable" (README, "Exit codes"); the training extra is usage.
EXIT_CODE_OF_EXTRA = {"train": ExitCode.USAGE, "cpu": ExitCode.PROVIDER_UNAVAILABLE, "serve": ExitCode.USAGE}


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


def default_of(config: type[DataclassInstance], name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config`` (its default_factory called when it has one)."""
    spec = {field.name: field for field in dataclasses.fields(config)}[name]
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    if spec.default is dataclasses.MISSING:
        raise ValueError(f"{config.__name__}.{name} has no default")
    return spec.default


def run_command(app: Callable[[], object], interrupted: str, *, command: str) -> None:
    """Run ``app``; Ctrl-C prints ``interrupted`` (one line) and exits 130, a closed stdout ends quietly, a missing
    optional extra and a write failure that no handler of the command caught are one ``command: error:`` line.

    typer turns a KeyboardInterrupt into ``Exit(130)`` and a closed pipe into ``sys.exit(1)`` before they reach
    this function, silently: both are recognised here by the exception they were raised from.
    """
    # Pillow's advisory warnings about odd metadata (corrupt EXIF, palette transparency) would only clutter stderr:
    # every real problem is reported per input, and decompression bombs are errors in the decoder itself.
    warnings.filterwarnings("ignore", module=r"PIL(\..*)?$")
    try:
        app()
    except KeyboardInterrupt:
        _interrupted(interrupted)
    except BrokenPipeError:
        _closed_pipe()
    except SystemExit as done:
        cause = _raised_from(done, (KeyboardInterrupt, BrokenPipeError))
        if isinstance(cause, KeyboardInterrupt) and done.code == ExitCode.INTERRUPTED:
            _interrupted(interrupted)
        if isinstance(cause, BrokenPipeError):
            _closed_pipe()
        raise
    except WriteError as error:
        _fail(command, str(error), ExitCode.WRITE_FAILED)
    except ModuleNotFoundError as error:
        extra = missing_extra(error)
        if extra is None:
            raise
        _fail(command, *extra)


def _raised_from(error: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of ``kinds`` in the chain ``error`` was raised from (or while handling)."""
    seen: set[int] = set()
    current = error.__cause__ or error.__context__
    while current is not None and id(current) not in seen:
        if isinstance(current, kinds):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _interrupted(message: str) -> None:
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()
    sys.exit(ExitCode.INTERRUPTED)


def _closed_pipe() -> None:
    # The reader went away (e.g. `cifar-infer ... --json | head`): stop quietly, as Unix tools do.
    try:
        stdout = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # typer may have wrapped it
        stdout = 1
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stdout)
    sys.exit(ExitCode.OK)


def _fail(command: str, message: str, code: int) -> None:
    sys.stderr.write(f"{command}: error: {message}\n")
    sys.exit(code)

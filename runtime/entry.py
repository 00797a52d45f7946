"""What every command's console entry point does around its typer app: Ctrl-C, closed pipes, missing extras,
write failures, Pillow's chatter."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable

from cifar_edge.runtime.atomic_io import WriteError
from cifar_edge.runtime.errors import ExitCode
from cifar_edge.runtime.extras import missing_extra


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

"""Exit codes shared by all five commands, and the one-line form of an error message.

The table is documented once, in README.md ("Exit codes"); each command's ``--help`` prints the rows it uses.
"""

from __future__ import annotations

import re
from enum import IntEnum


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

"""Export errors and the exit codes the CLI maps them to (documented in docs/export.md)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARITY_FAILED = 1
EXIT_USAGE = 2
EXIT_EXPORT_FAILED = 3


class ExportError(Exception):
    """Base class; ``str()`` is one line and ``exit_code`` is what the CLI returns."""

    exit_code = EXIT_EXPORT_FAILED


class ExportUsageError(ExportError):
    """Bad options, or a run folder that cannot be used (missing files, unknown architecture, bad contract)."""

    exit_code = EXIT_USAGE


class ExportFailedError(ExportError):
    """The exporter, converter or quantizer itself failed, or wrote a file that does not validate."""

    exit_code = EXIT_EXPORT_FAILED


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (tools like onnxruntime raise multi-line ones)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__

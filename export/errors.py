"""Export errors and the exit codes the CLI maps them to (documented in docs/export.md)."""

from __future__ import annotations

from cifar_edge.runtime.common.command import ExitCode


class ExportError(Exception):
    """Base class; ``str()`` is one line and ``exit_code`` is what the CLI returns."""

    exit_code = ExitCode.TOOL_FAILED


class ExportUsageError(ExportError):
    """Bad options, or a run folder that cannot be used (missing files, unknown architecture, bad contract)."""

    exit_code = ExitCode.USAGE


class ExportFailedError(ExportError):
    """The exporter, converter or quantizer itself failed, or wrote a file that does not validate."""

    exit_code = ExitCode.TOOL_FAILED

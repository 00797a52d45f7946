"""Which run folder to export: the one given, else the latest run (``runs/latest``, relative to the current folder).

``runs/latest`` is read by the runtime's own ``latest_run_dir`` (a symlink to the run folder or, where symlinks fail,
a text file holding its name), so ``cifar-export`` and ``cifar-infer`` always agree on what "latest" means.
"""

from __future__ import annotations

from pathlib import Path

from cifar_edge.export.errors import ExportUsageError
from cifar_edge.runtime.common.names import LATEST_LINK, RUNS_DIR
from cifar_edge.runtime.model_file import latest_run_dir


def resolve_run_dir(run_dir: str | Path | None, runs_dir: str | Path = RUNS_DIR) -> Path:
    """``run_dir`` itself when given, else the latest run; ExportUsageError (one line) when there is none."""
    if run_dir is not None:
        path = Path(run_dir)
        if not path.is_dir():
            raise ExportUsageError(f"{path}: run folder not found")
        return path
    latest = latest_run_dir(runs_dir)
    if latest is None:
        where = Path(runs_dir) / LATEST_LINK
        raise ExportUsageError(
            f"no RUN_DIR given and {where} does not point to a run folder (looked under {Path.cwd()}); "
            "pass the run folder written by cifar-train"
        )
    return latest

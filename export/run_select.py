"""Which run folder to export: the one given, else the latest run (``runs/latest``, relative to the current folder)."""

from __future__ import annotations

from pathlib import Path

from cifar_edge.export.errors import ExportUsageError

RUNS_DIR = Path("runs")
LATEST_NAME = "latest"


def latest_run_dir(runs_dir: str | Path = RUNS_DIR) -> Path | None:
    """The folder ``runs/latest`` names: a symlink to it, or (where symlinks fail) a text file holding its name."""
    latest = Path(runs_dir) / LATEST_NAME
    if latest.is_dir():  # a symlink to a folder (or a real folder)
        return latest.resolve()
    if latest.is_file():
        try:
            name = latest.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not name or "\n" in name:
            return None
        target = Path(name) if Path(name).is_absolute() else Path(runs_dir) / name
        return target if target.is_dir() else None
    return None


def resolve_run_dir(run_dir: str | Path | None, runs_dir: str | Path = RUNS_DIR) -> Path:
    """``run_dir`` itself when given, else the latest run; ExportUsageError (one line) when there is none."""
    if run_dir is not None:
        path = Path(run_dir)
        if not path.is_dir():
            raise ExportUsageError(f"{path}: run folder not found")
        return path
    latest = latest_run_dir(runs_dir)
    if latest is None:
        where = Path(runs_dir) / LATEST_NAME
        raise ExportUsageError(
            f"no RUN_DIR given and {where} does not point to a run folder (looked under {Path.cwd()}); "
            "pass the run folder written by cifar-train"
        )
    return latest

"""``run_menu``: several runs measured on this machine in one process, one row each (``cifar-bench RUN_A RUN_B ...``).

Each row (record.py) says what the run's model is, what it costs per image at one pass (MFLOP, img/s, ms)
and what it scores at 1, 2 and 6 passes, so a size and a TTA mode can be picked for a device. Runs are measured
one after the other with the same threads, images rule and repeats; a run that fails is one failed row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from cifar_edge.export.benchmark.config import MENU_PROVIDER, MENU_VARIANTS, QUICK_IMAGES, BenchConfig
from cifar_edge.export.benchmark.machine import machine_info
from cifar_edge.export.benchmark.menu.measure import measure_run
from cifar_edge.export.benchmark.menu.record import MenuRow, field_docs
from cifar_edge.runtime.passes import TTA_PASSES
from cifar_edge.runtime.providers.strict import default_intra_op_threads

MENU_SCHEMA_VERSION = 1


@dataclass
class MenuResult:
    report: dict[str, Any]
    rows: list[MenuRow]

    @property
    def exit_code(self) -> int:
        return 1 if any(row.status == "failed" for row in self.rows) else 0


def run_menu(config: BenchConfig, step: Callable[[str], Any] | None = None) -> MenuResult:
    """Measure every run of ``config.run_dirs``; the menu.json document and its rows."""
    threads = config.threads or default_intra_op_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        for index, run_dir in enumerate(config.run_dirs, start=1):
            prefix = f"[{index}/{len(config.run_dirs)}] {Path(run_dir).name}: "
            rows.append(measure_run(Path(run_dir), config, threads, _prefixed(step, prefix)))
    finally:
        torch.set_num_threads(previous_threads)
    report = {
        "schema_version": MENU_SCHEMA_VERSION,
        "kind": "cifar-edge benchmark menu",
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(threads),
        "settings": _settings(config, threads),
        "fields": field_docs(),
        "runs": [row.to_dict() for row in rows],
    }
    return MenuResult(report, rows)


def _prefixed(step: Callable[[str], Any] | None, prefix: str) -> Callable[[str], Any]:
    return (lambda _text: None) if step is None else (lambda text: step(prefix + text))


def _settings(config: BenchConfig, threads: int) -> dict[str, Any]:
    return {
        "quick": config.quick,
        "threads": threads,
        "batch_size": config.batch_size,
        "latency_batch_size": 1,
        "images": config.images or (QUICK_IMAGES if config.quick else None),
        "data": config.data or "each run's validation split",
        "provider": MENU_PROVIDER,
        "variants": list(MENU_VARIANTS),
        "passes_per_image": 1,
        "tta_passes": dict(TTA_PASSES),
        "repeats": asdict(config.repeats),
        "timing": "model only, preprocessed float32 inputs in memory, after warm-up; each run's fp32 and int8 "
        "engines interleaved, the runs one after the other",
    }

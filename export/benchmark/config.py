"""What one ``cifar-bench`` invocation measures, in one dataclass (light: the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cifar_edge.export.benchmark.artifacts import VARIANTS
from cifar_edge.export.benchmark.timing import FULL, QUICK, Repeats

PROVIDERS = ("cpu", "cuda")
# Eval images when --quick (a smoke run); a full run uses every eval image.
QUICK_IMAGES = 64
# What a menu (several run folders) times for each run: one pass per image, fp32 and int8 ONNX on the CPU.
MENU_VARIANTS = ("onnx-fp32", "onnx-int8")
MENU_PROVIDER = "cpu"


@dataclass(frozen=True)
class BenchConfig:
    """One ``cifar-bench`` invocation. Defaults are what ``cifar-bench`` does with no options."""

    # Run folder; None: the latest run (runs/latest).
    run_dir: Path | None = None
    # Several run folders: measured as a menu (menu.md, menu.json, menu.png) instead of one run's table.
    run_dirs: tuple[Path, ...] = ()
    # Providers to measure on; a provider that is not really active gives skipped rows that say why.
    providers: tuple[str, ...] = PROVIDERS
    # Variants (rows) to measure: keys of bench_artifacts.VARIANTS.
    formats: tuple[str, ...] = tuple(VARIANTS)
    # Eval images: None = the run's validation split; "cifar10" = the official test split; or an image folder.
    data: str | None = None
    # Where CIFAR-10 lives (for data="cifar10" and runs trained on it).
    data_root: str | None = None
    # Where bench.md and bench.json go; None: the run folder (a menu: the current folder).
    output_dir: Path | None = None
    # Threads for torch and onnxruntime alike; None: the runtime's default (all usable cores).
    threads: int | None = None
    # Batch size of the throughput column (and of the accuracy pass).
    batch_size: int = 256
    # Cap on eval images (class-stratified); None: all (--quick: QUICK_IMAGES).
    images: int | None = None
    # Small smoke run: few images, few repeats, smaller export verification.
    quick: bool = False
    # Measure the cold start of fresh processes (several seconds per torch row).
    cold_start: bool = True

    @property
    def repeats(self) -> Repeats:
        return QUICK if self.quick else FULL

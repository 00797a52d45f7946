"""bench/budget_curve.py end to end at a tiny setting: both methods per budget, the JSON record and the plot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "budget_curve.py"


def test_budget_curve_trains_both_methods_per_budget(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("budget_curve", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "out"
    args = ["--data", str(tiny_dataset_dir), "--budgets", "2s", "--threads", "1", "--out", str(out)]
    assert bench.main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    record = json.loads((out / "budget_curve.json").read_text())
    assert record["budgets_s"] == [2.0] and record["data"]["train"] == 66
    budgeted, stopped = record["runs"]
    assert (budgeted["method"], stopped["method"]) == ("budgeted", "fixed_stopped")
    assert budgeted["plan"]["total_steps"] >= 1 and budgeted["warm_up_s"] > 0 and stopped["plan"] is None
    for run in record["runs"]:
        assert 0 <= run["val_accuracy"] <= 1 and run["val_flip_shift_accuracy"] is not None and run["steps"] >= 1
    assert stopped["epochs"] <= 18 and (stopped["stopped"] is not None or stopped["epochs"] == 18)
    assert (out / "budget_curve.png").stat().st_size > 0

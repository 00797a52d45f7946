"""bench/sweep.py end to end on the tiny image folder: real fit() runs, paired per seed, recorded in sweep.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SWEEP = Path(__file__).resolve().parents[2] / "bench" / "sweep.py"


def _sweep(tmp_path: Path, data: Path, plan: dict, *args: str) -> subprocess.CompletedProcess[str]:
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    command = [sys.executable, str(SWEEP), str(plan_file), "--data", str(data), "--out", str(tmp_path / "out"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_sweep_pairs_variants_by_seed_and_records_every_run(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    plan = {
        "base": {"recipe": "seed", "epochs": 1, "batch_size": 16, "threads": 1, "cache_dir": str(tmp_path / "cache")},
        "seeds": [0, 1],
        "variants": [
            {"label": "base"},
            {"label": "slower", "config": {"lr": 0.001}},
            {"label": "broken", "config": {"recipe_overrides": {"no_such_field": 1}}, "seeds": [1]},
        ],
    }
    completed = _sweep(tmp_path, tiny_dataset_dir, plan)
    assert completed.returncode == 0, completed.stderr
    result = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [(run["label"], run["seed"]) for run in result["runs"]] == [
        ("base", 0),
        ("slower", 0),
        ("base", 1),
        ("slower", 1),
        ("broken", 1),
    ]
    base, slower, broken = result["summary"]
    assert base["runs"] == 2 and "mean_difference" not in base
    by_run = {(run["label"], run["seed"]): run for run in result["runs"]}
    differences = [by_run["slower", seed]["final_accuracy"] - by_run["base", seed]["final_accuracy"] for seed in (0, 1)]
    assert slower["paired_seeds"] == 2
    assert abs(slower["mean_difference"] - sum(differences) / 2) < 1e-12
    six = [by_run["slower", seed]["final_accuracy"] - by_run["base", seed]["flip_shift_accuracy"] for seed in (0, 1)]
    assert abs(slower["vs_first_6pass"] - sum(six) / 2) < 1e-12  # one pass against the first's six
    assert all(by_run[key]["flip_shift_accuracy"] is not None for key in by_run if key[0] != "broken")
    assert broken["runs"] == 0 and broken["failed"] == 1
    assert "unknown recipe field 'no_such_field'" in by_run["broken", 1]["error"]
    for run in result["runs"][:4]:
        assert run["epochs"] == 1 and len(run["epoch_train_seconds"]) == 1 and run["train_seconds"] > 0
    assert "(1 failed)" in completed.stdout  # the table names the failure; the sweep went on


def test_a_train_fraction_trains_on_a_stratified_share_scored_on_the_same_images(
    tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    base = {"recipe": "seed", "epochs": 1, "batch_size": 16, "threads": 1, "cache_dir": str(tmp_path / "cache")}
    plan = {"base": base, "seeds": [3], "variants": [{"label": "all"}, {"label": "half", "train_fraction": 0.5}]}
    completed = _sweep(tmp_path, tiny_dataset_dir, plan)
    assert completed.returncode == 0, completed.stderr
    runs = {run["label"]: run for run in json.loads((tmp_path / "out" / "sweep.json").read_text())["runs"]}
    # 3 classes x 24 images, 2 per class held out: 22 per class train, half of them (11) in the share.
    assert runs["all"]["train_images"] == 66 and runs["half"]["train_images"] == 33
    records = {
        label: json.loads((tmp_path / "out" / "runs" / f"{label}-seed3" / "run.json").read_text()) for label in runs
    }
    assert (
        records["half"]["data"]["summary"]["class_counts"]["val"]
        == records["all"]["data"]["summary"]["class_counts"]["val"]
    )
    assert set(records["half"]["data"]["summary"]["class_counts"]["train"].values()) == {11}
    assert records["half"]["data"]["spec"] is None  # the arrays were handed to fit(): nothing to reload them from


def test_sweep_rejects_a_train_fraction_outside_0_to_1_before_any_run(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    plan = {"base": {"recipe": "seed"}, "seeds": [0], "variants": [{"label": "none", "train_fraction": 0}]}
    completed = _sweep(tmp_path, tiny_dataset_dir, plan)
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and "train_fraction must be in (0, 1], got 0" in completed.stderr
    assert not (tmp_path / "out" / "runs").exists()


def test_sweep_starts_no_run_after_its_deadline(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    base = {"recipe": "seed", "epochs": 1, "threads": 1, "cache_dir": str(tmp_path / "cache")}
    plan = {"base": base, "seeds": [0], "variants": [{"label": "base"}]}
    completed = _sweep(tmp_path, tiny_dataset_dir, plan, "--deadline-s", "0")
    assert completed.returncode == 0, completed.stderr
    assert "1 of 1 runs not started" in completed.stdout
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["runs"] == []


def test_sweep_rejects_a_plan_without_runs_in_one_line(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    completed = _sweep(tmp_path, tiny_dataset_dir, {"base": {}, "seeds": [], "variants": [{"label": "base"}]})
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and "the plan has no runs" in completed.stderr


def test_every_committed_plan_builds_valid_configurations(tmp_path: Path) -> None:
    # A lent GPU's minutes are few: a typo in a plan must fail here, not on the device.
    sys.path.insert(0, str(SWEEP.parent))
    try:
        from sweep import run_config, train_fraction
    finally:
        sys.path.remove(str(SWEEP.parent))
    from cifar_edge.train.config import TrainConfig, resolve_recipe

    plans = sorted((SWEEP.parent / "plans").glob("*.json"))
    assert plans
    for plan_file in plans:
        plan = json.loads(plan_file.read_text())
        for variant in plan["variants"]:
            train_fraction(variant)
            for seed in variant.get("seeds", plan["seeds"]):
                config = TrainConfig(**run_config(plan["base"], variant, seed, "cifar10", tmp_path))
                config.validate()
                resolve_recipe(config)

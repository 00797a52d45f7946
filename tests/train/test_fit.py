"""fit(): real training on tiny real image files; the run folder, resume, Ctrl-C and divergence behaviour."""

from __future__ import annotations

import csv
import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_edge.runtime.preprocess import normalize_batch
from cifar_edge.train import FitResult, TrainConfig, fit
from cifar_edge.train.data.load import Splits
from cifar_edge.train.fit import TrainingFailed, TrainingInterrupted
from cifar_edge.train.run_folder import load_run
from cifar_edge.train.state import StepEvent


def _checkpoint_state(result: FitResult) -> dict[str, torch.Tensor]:
    return torch.load(result.checkpoint, weights_only=True)["model"]


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert different == [], f"tensors differ: {different}"


def _train_accuracy(run_dir: Path, splits: Splits) -> float:
    run = load_run(run_dir)  # what cifar-export sees: safetensors + run.json
    inputs = torch.from_numpy(normalize_batch(splits.train_images, run.contract))
    with torch.no_grad():
        predictions = run.model(inputs).argmax(dim=1).numpy()
    return float((predictions == splits.train_labels).mean())


def test_small_model_overfits_random_labels(tmp_path: Path) -> None:
    """Memorising 48 noise images with random labels needs a working loop: gradients, optimizer, schedule."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(48, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, size=48).astype(np.int64)
    splits = Splits(images, labels, images[:8], labels[:8], ("a", "b", "c", "d"))
    config = TrainConfig(
        recipe="default",
        model_kwargs={"widths": [16, 32, 32]},
        epochs=15,
        batch_size=16,
        lr=0.5,
        recipe_overrides={"crop_padding": 0, "flip": False, "label_smoothing": 0.0},
        run_dir=str(tmp_path / "run"),
        quiet=True,
        threads=1,
    )
    result = fit(config, splits)
    assert result.metrics[0]["train_accuracy"] < 0.6
    assert result.metrics[-1]["train_accuracy"] == 1.0
    assert _train_accuracy(result.run_dir, splits) == 1.0


def test_run_folder_is_complete_and_self_describing(tiny_splits: Splits, airnet_config: TrainConfig) -> None:
    overrides = {**airnet_config.recipe_overrides, "tta": "flip", "lookahead_every": 0}
    config = replace(airnet_config, recipe_overrides=overrides)
    result = fit(config, tiny_splits)
    for path in (result.checkpoint, result.weights, result.run_json, result.metrics_csv, result.curves_png):
        assert path.is_file() and path.stat().st_size > 0, path
    assert result.curves_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in result.run_dir.iterdir()) == sorted(
        ["checkpoint.pt", "model.safetensors", "run.json", "metrics.csv", "curves.png"]
    )  # no temp files left behind

    record = json.loads(result.run_json.read_text())
    assert record["architecture"] == {
        "name": "airnet",
        "kwargs": {"widths": [8, 16, 16], "num_classes": 3},
        "tta": "flip",
    }
    assert record["contract"]["class_names"] == list(tiny_splits.class_names)
    assert record["contract"]["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert record["config"]["recipe"] == "default" and record["config"]["seed"] == 0
    assert record["recipe"]["lookahead_every"] == 0 and record["weights"] == "model"
    assert record["status"] == "completed"
    assert [row["epoch"] for row in record["metrics"]["per_epoch"]] == [1, 2]
    assert record["metrics"]["final_val_accuracy"] == result.final_val_accuracy
    environment = record["environment"]
    assert environment["torch"] == torch.__version__ and environment["threads"] == 1
    assert environment["device"] == "cpu" and environment["device_name"] and environment["wall_time_s"] > 0
    assert record["data"]["summary"]["source"] == "test fixture"

    with result.metrics_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    # Each epoch scores the bare network; the last also scores it with the recipe's TTA, and that is the final
    # accuracy (what the export computes).
    assert rows[0]["val_tta_accuracy"] == "" and float(rows[-1]["val_accuracy"]) >= 0
    assert float(rows[-1]["val_tta_accuracy"]) == pytest.approx(result.final_val_accuracy)
    assert result.metrics[-1]["val_tta_accuracy"] == result.final_val_accuracy

    checkpoint = torch.load(result.checkpoint, weights_only=True)
    assert checkpoint["position"] == {"epoch": 2, "step": 0, "global_step": 8}
    assert checkpoint["contract"] == record["contract"] and checkpoint["config"]["epochs"] == 2
    assert checkpoint["lookahead"] is None and checkpoint["optimizer"]["state"]
    assert load_run(result.run_dir).record["weights_sha256"]


def test_seed_recipe_records_unnormalised_inputs(tiny_splits: Splits, seed_config: TrainConfig) -> None:
    result = fit(replace(seed_config, epochs=1), tiny_splits)
    record = json.loads(result.run_json.read_text())
    assert record["contract"]["mean"] == [0.0, 0.0, 0.0] and record["contract"]["std"] == [1.0, 1.0, 1.0]
    assert record["architecture"] == {"name": "seed", "kwargs": {"num_classes": 3}}
    assert "tta" not in record["architecture"]


def test_default_run_folder_and_latest_pointer(tiny_splits: Splits, seed_config: TrainConfig, tmp_path: Path) -> None:
    config = replace(seed_config, epochs=1, run_dir=None, runs_root=str(tmp_path / "runs"))
    first = fit(config, tiny_splits)
    second = fit(config, tiny_splits)
    assert first.run_dir != second.run_dir and first.run_dir.parent == tmp_path / "runs"
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink() and latest.resolve() == second.run_dir.resolve()
    assert (latest / "run.json").is_file()


def test_resume_equals_an_uninterrupted_run(tiny_splits: Splits, seed_config: TrainConfig, tmp_path: Path) -> None:
    straight = fit(replace(seed_config, run_dir=str(tmp_path / "straight")), tiny_splits)
    fit(replace(seed_config, epochs=1, run_dir=str(tmp_path / "split")), tiny_splits)
    resumed = fit(TrainConfig(resume=str(tmp_path / "split"), epochs=2, quiet=True, threads=1), tiny_splits)
    assert resumed.run_dir == tmp_path / "split" and resumed.epochs == 2
    _assert_same_weights(_checkpoint_state(straight), _checkpoint_state(resumed))
    for key in ("train_loss", "train_accuracy", "lr"):
        assert [row[key] for row in straight.metrics] == [row[key] for row in resumed.metrics]
    # The last epoch of a run is scored in float32, others in the training precision (bf16 where native): the
    # 1-epoch first session scored its epoch as final, the straight run as a mid-run monitor.
    timings = {"seconds": 0, "train_seconds": 0, "elapsed_seconds": 0, "train_images_per_second": 0}
    assert straight.metrics[-1] | timings == resumed.metrics[-1] | timings
    assert straight.metrics[0]["val_loss"] == pytest.approx(resumed.metrics[0]["val_loss"], abs=0.02)


def test_ctrl_c_mid_epoch_saves_and_resume_equals_an_uninterrupted_run(
    tiny_splits: Splits, airnet_config: TrainConfig, tmp_path: Path
) -> None:
    """A real SIGINT at step 6 (mid-epoch 2 of the default recipe: schedule, augmentation, momentum, the frozen
    whitening bias, and lookahead averaging, whose snapshot at step 6 must survive the resume)."""
    straight = fit(replace(airnet_config, run_dir=str(tmp_path / "straight")), tiny_splits)
    interrupted_dir = tmp_path / "interrupted"

    def press_ctrl_c(event: StepEvent) -> None:
        if event.global_step == 6:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as caught:
        fit(replace(airnet_config, run_dir=str(interrupted_dir)), tiny_splits, on_step=press_ctrl_c)
    assert caught.value.global_step == 6
    assert caught.value.resume_command == f"cifar-train --resume {interrupted_dir}"
    saved = torch.load(interrupted_dir / "checkpoint.pt", weights_only=True)
    assert saved["position"] == {"epoch": 1, "step": 2, "global_step": 6}
    assert saved["lookahead"]["average"] is not None  # taken at step 6; updated at step 8 after the resume
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    resumed = fit(TrainConfig(resume=str(interrupted_dir), quiet=True, threads=1), tiny_splits)
    _assert_same_weights(_checkpoint_state(straight), _checkpoint_state(resumed))
    momentum = [torch.load(r.checkpoint, weights_only=True)["optimizer"]["state"] for r in (straight, resumed)]
    assert momentum[0].keys() == momentum[1].keys() and len(momentum[0]) > 0
    for index in momentum[0]:
        _assert_same_weights(momentum[0][index], momentum[1][index])
    assert [row["train_loss"] for row in straight.metrics] == [row["train_loss"] for row in resumed.metrics]
    averages = [torch.load(r.checkpoint, weights_only=True)["lookahead"]["average"] for r in (straight, resumed)]
    _assert_same_weights(averages[0], averages[1])
    assert json.loads(resumed.run_json.read_text())["weights"] == "lookahead_average"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_splits: Splits, seed_config: TrainConfig, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    kept: dict[str, bytes] = {}

    def diverge_in_epoch_two(event: StepEvent) -> None:
        if event.epoch == 2 and event.step == 1:
            kept.update({name: (run_dir / name).read_bytes() for name in ("checkpoint.pt", "run.json")})
            with torch.no_grad():
                event.model[0].weight.fill_(float("inf"))  # the next forward pass produces NaN

    with pytest.raises(TrainingFailed) as caught:
        fit(replace(seed_config, run_dir=str(run_dir)), tiny_splits, on_step=diverge_in_epoch_two)
    message = str(caught.value)
    assert "step 6 (epoch 2, batch 2)" in message and "after epoch 1" in message and "nan" in message
    assert caught.value.global_step == 6
    for name, content in kept.items():
        assert (run_dir / name).read_bytes() == content, f"{name} changed"
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["position"]["epoch"] == 1
    # The way out: continue from the last good checkpoint with a smaller learning rate.
    gentler = fit(TrainConfig(resume=str(run_dir), lr=0.01, quiet=True, threads=1), tiny_splits)
    assert gentler.epochs == 2 and gentler.metrics[-1]["lr"] == 0.01
    assert json.loads(gentler.run_json.read_text())["recipe"]["lr"] == 0.01


def test_bad_options_and_folders_are_value_errors(
    tiny_splits: Splits, seed_config: TrainConfig, tmp_path: Path
) -> None:
    fit(replace(seed_config, epochs=1), tiny_splits)
    with pytest.raises(ValueError, match="already holds a run"):
        fit(seed_config, tiny_splits)
    with pytest.raises(ValueError, match="already completed its 1 epochs"):
        fit(TrainConfig(resume=seed_config.run_dir, quiet=True), tiny_splits)
    with pytest.raises(ValueError, match=r"no checkpoint\.pt"):
        fit(TrainConfig(resume=str(tmp_path / "nowhere"), quiet=True), tiny_splits)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            fit(replace(seed_config, device="cuda", run_dir=str(tmp_path / "cuda")), tiny_splits)
    other_classes = replace(tiny_splits, class_names=("x", "y", "z"))
    with pytest.raises(ValueError, match="differ from the run's"):
        fit(TrainConfig(resume=seed_config.run_dir, epochs=2, quiet=True), other_classes)


def test_no_validation_split_still_trains(tiny_splits: Splits, seed_config: TrainConfig) -> None:
    empty = np.zeros((0, 32, 32, 3), dtype=np.uint8)
    splits = replace(tiny_splits, val_images=empty, val_labels=np.zeros(0, dtype=np.int64))
    result = fit(replace(seed_config, epochs=1), splits)
    assert result.best_val_accuracy is None and result.metrics[0]["val_accuracy"] is None
    assert result.curves_png.stat().st_size > 0


def test_eval_every_scores_the_monitor_epochs_and_always_the_last(
    tiny_splits: Splits, seed_config: TrainConfig
) -> None:
    config = replace(seed_config, epochs=3, recipe_overrides={"eval_every": 2})
    result = fit(config, tiny_splits)
    assert [row["val_accuracy"] is not None for row in result.metrics] == [False, True, True]
    assert result.final_val_accuracy == result.metrics[-1]["val_accuracy"]
    with open(result.run_dir / "metrics.csv", newline="") as handle:
        assert [row["val_accuracy"] != "" for row in csv.DictReader(handle)] == [False, True, True]
    assert (result.run_dir / "curves.png").stat().st_size > 0

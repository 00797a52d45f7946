"""torchrun: two CPU processes (gloo) train one model with DistributedDataParallel; rank 0 alone writes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_edge.train.distributed import local_batch_size, rank_slice, usable_images

WORKER = Path(__file__).with_name("ddp_worker.py")


def _worker_module():
    spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_batches_split_evenly_over_ranks() -> None:
    assert [rank_slice(32, 48, rank, 2) for rank in (0, 1)] == [(32, 40), (40, 48)]
    assert [rank_slice(48, 53, rank, 2) for rank in (0, 1)] == [(48, 51), (51, 53)]  # uneven last batch
    assert rank_slice(0, 10, 0, 1) == (0, 10)
    assert usable_images(65, 16, 2) == 64 and usable_images(63, 16, 2) == 63 and usable_images(64, 16, 2) == 64
    assert local_batch_size(512, 4) == 128
    with pytest.raises(ValueError, match="--batch-size 10 does not split over 4 processes"):
        local_batch_size(10, 4)


def test_torchrun_two_cpu_processes_train_identical_weights(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    runs_root, cache, out = tmp_path / "runs", tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(WORKER),
        str(tiny_dataset_dir),
        str(runs_root),
        str(cache),
        str(out),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Generous timeout: it takes ~15 s idle, but this 2-core machine may be busy with other work.
    completed = subprocess.run(command, capture_output=True, text=True, timeout=420, env=environment)
    # torchrun reports a worker's failure on either stream; keep both so a rare failure can be diagnosed.
    assert completed.returncode == 0, f"stdout:\n{completed.stdout[-3000:]}\nstderr:\n{completed.stderr[-5000:]}"

    ranks = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["threads"] for r in ranks] == [1, 1]
    assert ranks[0]["state_sha256"] == ranks[1]["state_sha256"]  # DDP kept every weight and statistic equal
    assert ranks[0]["run_dir"] == ranks[1]["run_dir"]  # rank 0 chose the folder and told rank 1
    assert ranks[0]["train_loss"] == ranks[1]["train_loss"] and ranks[0]["val_accuracy"] is not None

    # The run folder was written once, by rank 0, and holds exactly the weights both ranks ended with.
    run_dir = Path(ranks[0]["run_dir"])
    assert sorted(path.name for path in runs_root.iterdir()) == sorted([run_dir.name, "latest"])
    assert sorted(path.name for path in run_dir.iterdir()) == sorted(
        ["checkpoint.pt", "model.safetensors", "run.json", "metrics.csv", "curves.png"]
    )
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert _worker_module().state_hash(checkpoint["model"]) == ranks[0]["state_sha256"]
    assert checkpoint["position"]["epoch"] == 2 and checkpoint["lookahead"]["average"] is not None
    record = json.loads((run_dir / "run.json").read_text())
    assert [row["epoch"] for row in record["metrics"]["per_epoch"]] == [1, 2]
    assert record["metrics"]["per_epoch"][-1]["train_loss"] == ranks[0]["train_loss"][-1]

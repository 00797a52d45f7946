"""One torchrun process of test_distributed.py: trains with fit() and writes a hash of its final weights.

Usage (by the test): ``python -m torch.distributed.run --nproc-per-node 2 ddp_worker.py DATA RUNS CACHE OUT``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

from cifar_edge.train import TrainConfig, fit
from cifar_edge.train.state import StepEvent


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor of a state_dict, in name order (the test hashes the checkpoint the same way)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(data: str, runs_root: str, cache_dir: str, out_dir: str) -> None:
    models: list[nn.Module] = []

    def keep_model(event: StepEvent) -> None:
        if not models:
            models.append(event.model)

    config = TrainConfig(
        recipe="default",
        model_kwargs={"widths": [8, 16, 16]},
        epochs=2,
        batch_size=16,
        # The default recipe's epoch milestones scaled down: the whitening bias freezes after epoch 1 (DDP is
        # rebuilt for the new set of trainable parameters) and lookahead averaging runs in epoch 2.
        recipe_overrides={"whiten_bias_epochs": 1, "average_start_epoch": 1, "lookahead_every": 2},
        data=data,
        cache_dir=cache_dir,
        runs_root=runs_root,
        device="cpu",
        quiet=True,
    )
    result = fit(config, on_step=keep_model)
    rank = os.environ["RANK"]
    record = {
        "rank": int(rank),
        "world_size": int(os.environ["WORLD_SIZE"]),
        "threads": torch.get_num_threads(),
        "state_sha256": state_hash(models[0].state_dict()),
        "run_dir": str(result.run_dir),
        "val_accuracy": result.final_val_accuracy,
        "train_loss": [row["train_loss"] for row in result.metrics],
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:5])

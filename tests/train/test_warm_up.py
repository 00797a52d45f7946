"""The compile warm-up: every batch shape and trainable-parameter set runs once before the clock, and the run still
computes exactly what it would have computed without it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from cifar_edge.train import TrainConfig, fit
from cifar_edge.train.data.load import Splits
from cifar_edge.train.prepare import close_session, open_session
from cifar_edge.train.reporting import Reporter
from cifar_edge.train.state import EpochTotals, Position


def test_warm_up_visits_every_shape_and_signature_and_restores_the_state(
    tiny_splits: Splits, airnet_config: TrainConfig
) -> None:
    session = open_session(airnet_config, tiny_splits, Reporter(quiet=True))
    try:
        trainer = session.trainer
        bias = trainer.model.whiten.bias
        before = {name: value.clone() for name, value in trainer.model.state_dict().items()}
        seen: list[tuple[int, bool]] = []

        def recording(inputs: torch.Tensor) -> torch.Tensor:
            seen.append((len(inputs), bias.requires_grad))
            return trainer.model(inputs)

        trainer.train_model = recording
        trainer.warm_up(session.train_data, from_epoch=0)
        # 54 images at batch 16: full batches and a last one of 6; the whitening bias trains in epoch 1 only.
        assert sorted(seen) == [(6, False), (6, True), (16, False), (16, True)]
        after = trainer.model.state_dict()
        assert [name for name in before if not torch.equal(before[name], after[name])] == []
        assert all(parameter.grad is None for parameter in trainer.model.parameters())
        assert bias.requires_grad  # back to epoch 1's trainability

        seen.clear()
        trainer.warm_up(session.train_data, from_epoch=1)  # a resumed run only needs what is left
        assert sorted(seen) == [(6, False), (16, False)]
    finally:
        close_session(session)


def test_compiled_run_warms_up_outside_the_clock_and_trains_identically(
    tiny_splits: Splits, airnet_config: TrainConfig, tmp_path: Path, monkeypatch
) -> None:
    plain = fit(replace(airnet_config, run_dir=str(tmp_path / "plain")), tiny_splits)
    # torch.compile itself is not under test here (inductor needs minutes of CPU); the warm-up around it is.
    modes: list[str | None] = []

    def compile_recording_mode(model, mode=None, **options):
        modes.append(mode)
        return model

    monkeypatch.setattr(torch, "compile", compile_recording_mode)
    config = replace(airnet_config, compile=True, compile_mode="reduce-overhead", run_dir=str(tmp_path / "compiled"))
    compiled = fit(config, tiny_splits)
    assert modes == ["reduce-overhead"]  # one wrap: a single process recompiles itself when the bias freezes

    plain_state = torch.load(plain.checkpoint, weights_only=True)["model"]
    compiled_state = torch.load(compiled.checkpoint, weights_only=True)["model"]
    assert [name for name in plain_state if not torch.equal(plain_state[name], compiled_state[name])] == []
    assert compiled.final_val_accuracy == plain.final_val_accuracy
    record = json.loads(compiled.run_json.read_text())
    assert record["config"]["compile_mode"] == "reduce-overhead"
    environment = record["environment"]
    assert environment["warm_up_seconds"] >= 0
    assert "warm_up_seconds" not in json.loads(plain.run_json.read_text())["environment"]
    for row in compiled.metrics:
        assert 0 < row["train_seconds"] <= row["seconds"]


def test_cuda_graph_steps_are_marked_and_warmed_up_twice(
    tiny_splits: Splits, airnet_config: TrainConfig, monkeypatch
) -> None:
    # CUDA graphs need a GPU; what the loop owes them is testable anywhere: every graph runs twice in the warm-up
    # (cudagraph trees record on the second run), and every forward starts a new iteration for the graphs' memory.
    monkeypatch.setattr(torch, "compile", lambda model, **options: model)  # inductor itself is not under test
    config = replace(airnet_config, compile=True, compile_mode="reduce-overhead")
    session = open_session(config, tiny_splits, Reporter(quiet=True))
    try:
        trainer = session.trainer
        assert not trainer.cuda_graphs  # the CPU runs plain inductor in this mode: nothing to mark
        trainer.cuda_graphs = True
        events: list[str] = []
        monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: events.append("step"))
        forward = trainer.train_model

        def recording(inputs: torch.Tensor) -> torch.Tensor:
            events.append(f"forward {len(inputs)}")
            return forward(inputs)

        trainer.train_model = recording
        trainer.warm_up(session.train_data, from_epoch=1)
        assert events == ["step", "forward 16", "step", "forward 16", "step", "forward 6", "step", "forward 6"]

        events.clear()
        position = Position(epoch=1, global_step=4)
        assert trainer.train_epoch(session.train_data, position, EpochTotals(), Reporter(quiet=True))
        assert events == ["step", "forward 16"] * 3 + ["step", "forward 6"]
    finally:
        close_session(session)

"""checkpoint.pt: atomic replacement, weights_only loading, RNG state round trip, hostile files refused."""

from __future__ import annotations

import random
import resource
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_edge.train.checkpoint import (
    CheckpointError,
    capture_rng_state,
    read_checkpoint,
    restore_rng_state,
    write_checkpoint,
)


class ExplodesWhilePickled:
    """Stands for any failure inside torch.save (here: raised while the payload is being serialised)."""

    def __reduce__(self) -> tuple:
        raise RuntimeError("simulated failure in the middle of saving")


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name != "checkpoint.pt")


def test_exception_mid_save_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    write_checkpoint(path, {"model": {"weight": torch.arange(10.0)}, "position": {"epoch": 1}})
    before = path.read_bytes()
    payload = {"model": {"weight": torch.ones(1000)}, "boom": ExplodesWhilePickled(), "position": {"epoch": 2}}
    with pytest.raises(RuntimeError, match="simulated failure"):
        write_checkpoint(path, payload)
    assert path.read_bytes() == before
    assert read_checkpoint(path)["position"] == {"epoch": 1}
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE/SIGXFSZ behaviour is Linux's")
def test_disk_full_mid_write_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    """A real OS write failure part-way through the file (file-size limit: EFBIG after 64 KiB were written)."""
    path = tmp_path / "checkpoint.pt"
    write_checkpoint(path, {"model": {"weight": torch.zeros(4)}})
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises((OSError, RuntimeError)):
            write_checkpoint(path, {"model": {"weight": torch.randn(1_000_000)}})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert path.read_bytes() == before
    assert torch.equal(read_checkpoint(path)["model"]["weight"], torch.zeros(4))
    assert _leftovers(tmp_path) == []


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    write_checkpoint(path, {"config": {"seed": 3, "model_kwargs": None}, "rng": capture_rng_state()})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "cifar-edge-checkpoint" and raw["config"]["seed"] == 3


def test_rng_state_round_trips(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = tmp_path / "checkpoint.pt"
    write_checkpoint(path, {"rng": capture_rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1))
    restore_rng_state(read_checkpoint(path)["rng"])
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(1), expected[2])


class NotAllowedInACheckpoint:
    def __init__(self) -> None:
        self.code = "print('pwned')"


def test_files_that_need_unpickling_are_refused(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.pt"
    torch.save({"format": "cifar-edge-checkpoint", "payload": NotAllowedInACheckpoint()}, hostile)
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(hostile)
    # Our words, one line: not torch's advice to retry with full unpickling, cut mid-sentence, with ANSI codes.
    assert str(refused.value) == f"{hostile}: not a plain-tensor checkpoint; it will not be unpickled"
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"garbage\.pt"):
        read_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="not a cifar-edge checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")


def test_cli_refuses_a_pickled_checkpoint_in_our_words(tmp_path: Path) -> None:
    """--resume on a checkpoint that needs unpickling: exit 2, one line, no advice to load it unsafely."""
    from typer.testing import CliRunner

    from cifar_edge.train.cli import app

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"format": "cifar-edge-checkpoint", "payload": NotAllowedInACheckpoint()}, run_dir / "checkpoint.pt")
    result = CliRunner().invoke(app, ["--resume", str(run_dir)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"cifar-train: error: {run_dir / 'checkpoint.pt'}: not a plain-tensor checkpoint; it will not be unpickled"
    ]
    assert "weights_only" not in result.output and "\x1b" not in result.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"model": "resnet"},
            "architecture: unknown model 'resnet'; available: airnet, airnet-l, airnet-m, airnet-s, seed",
        ),
        ({"model": "airnet", "model_kwargs": {"widths": [-1, 8, 8]}}, "architecture: kwargs.widths must be 3"),
    ],
)
def test_resume_from_a_checkpoint_naming_an_unusable_architecture(
    tiny_dataset_dir: Path, tmp_path: Path, change: dict, message: str
) -> None:
    from typer.testing import CliRunner

    from cifar_edge.train.cli import app

    run_dir = tmp_path / "run"
    data = ["--data", str(tiny_dataset_dir), "--cache-dir", str(tmp_path / "cache")]
    fast = ["--recipe", "seed", "--batch-size", "16", "--threads", "1", "--quiet"]
    trained = CliRunner().invoke(app, [*data, *fast, "--epochs", "1", "--run-dir", str(run_dir)])
    assert trained.exit_code == 0, trained.output
    payload = read_checkpoint(run_dir / "checkpoint.pt")
    payload["recipe"].update(change)
    write_checkpoint(run_dir / "checkpoint.pt", {k: v for k, v in payload.items() if k not in ("format", "schema")})
    result = CliRunner().invoke(app, ["--resume", str(run_dir), "--epochs", "2"])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"cifar-train: error: {run_dir / 'checkpoint.pt'}: {message}"), line

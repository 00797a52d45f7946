"""Fuzzing checkpoint.pt: a damaged file reads as a checkpoint or is one line in our words, never torch's advice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cifar_edge.train.checkpoint import CheckpointError, read_checkpoint, write_checkpoint


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("checkpoint") / "checkpoint.pt"
    write_checkpoint(path, {"model": {"weight": torch.arange(6.0)}, "position": {"epoch": 1}, "metrics": [0.5]})
    return path.read_bytes()


@st.composite
def damage(draw: st.DrawFn, size: int) -> list[tuple[str, int, int]]:
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "truncate", "insert", "zero"]),
                st.integers(0, size - 1),
                st.integers(1, 64),
            ),
            min_size=1,
            max_size=3,
        )
    )


def _apply(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    buffer = bytearray(data)
    for kind, at, length in edits:
        at = min(at, max(len(buffer) - 1, 0))
        if kind == "flip":
            if buffer:
                buffer[at] ^= 0xFF
        elif kind == "truncate":
            del buffer[at:]
        elif kind == "insert":
            buffer[at:at] = bytes(range(length))
        else:
            buffer[at : at + length] = bytes(len(buffer[at : at + length]))
    return bytes(buffer)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_checkpoints_fail_in_one_line_of_our_own(checkpoint_bytes: bytes, tmp_path: Path, data) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(_apply(checkpoint_bytes, data.draw(damage(len(checkpoint_bytes)))))
    try:
        payload = read_checkpoint(path)
    except CheckpointError as error:
        text = str(error)
        assert text.startswith(f"{path}: ") and "\n" not in text and "\x1b" not in text, text
        assert "weights_only" not in text and "unsafe" not in text.lower(), text
        return
    assert isinstance(payload, dict) and payload["format"] == "cifar-edge-checkpoint"

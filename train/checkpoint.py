"""``checkpoint.pt``: the full training state, written atomically, read back without unpickling code.

The file is ``torch.save`` of a dict holding only tensors and plain Python values (dict, list, str, int, float,
bool, None), so ``torch.load(..., weights_only=True)`` reads it; nothing else is ever used to read it.
"""

from __future__ import annotations

import io
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifar_edge.runtime.common.atomic_io import atomic_write_bytes
from cifar_edge.runtime.common.command import first_line

CHECKPOINT_FORMAT = "cifar-edge-checkpoint"
CHECKPOINT_SCHEMA = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not one of ours; ``str()`` is one line naming the file."""


def write_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``payload``: a crash mid-save leaves the previous checkpoint intact."""
    body = {"format": CHECKPOINT_FORMAT, "schema": CHECKPOINT_SCHEMA, **payload}
    # Serialised in memory first: torch.save reports a full disk as a RuntimeError, our own write as a WriteError.
    buffer = io.BytesIO()
    torch.save(body, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU with ``weights_only=True`` (never falls back to full unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: not found (is {path.parent} a cifar-train run folder?)")
    try:
        is_zip = zipfile.is_zipfile(path)
    except zipfile.BadZipFile:  # a damaged end-of-archive record (e.g. one claiming several disks)
        is_zip = False
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read checkpoint ({error.strerror or first_line(error)})") from None
    if not is_zip:  # torch.save has written zip archives since torch 1.6; anything else is not ours
        raise CheckpointError(f"{path}: not a torch checkpoint (truncated, or not a zip archive)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's refusal: the file holds objects other than tensors and plain values. Its own message advises
        # loading with full unpickling, which would run code from the file: we never do, nor suggest it.
        raise CheckpointError(f"{path}: not a plain-tensor checkpoint; it will not be unpickled") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read checkpoint ({error.strerror or first_line(error)})") from None
    except Exception as error:  # torch raises zip, EOF and runtime errors for damaged files: say so in our words
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({_damage(error)})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a cifar-edge checkpoint")
    if payload.get("schema", 0) > CHECKPOINT_SCHEMA:
        raise CheckpointError(f"{path}: written by a newer cifar-edge (schema {payload['schema']}); upgrade")
    return payload


def _damage(error: Exception) -> str:
    """What is wrong with a damaged file, without relaying third-party advice (ANSI codes, retry hints)."""
    if isinstance(error, (zipfile.BadZipFile, EOFError)):
        return "truncated or not a zip archive"
    text = first_line(error, limit=None)
    if "weights_only" in text or "unpickl" in text.lower():
        return "its contents cannot be read as plain tensors"
    sentence = text.split(". ")[0].rstrip(".")  # the statement of what failed, not the advice after it
    return f"{type(error).__name__}: {first_line(sentence, limit=160)}"


def to_cpu(value: Any) -> Any:
    """Detached CPU copies of every tensor in a nested state (dicts, lists, tuples kept as they are)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(item) for item in value)
    return value


def capture_rng_state() -> dict[str, Any]:
    """Every global random generator as tensors and plain values (no numpy arrays, no pickled tuples)."""
    version, words, gauss_next = random.getstate()
    numpy_state: tuple[str, np.ndarray, int, int, float] = np.random.get_state(legacy=True)  # type: ignore[assignment]  # legacy=True: always the tuple
    numpy_kind, numpy_words, numpy_pos, numpy_has_gauss, numpy_gauss = numpy_state
    state: dict[str, Any] = {
        "torch_cpu": torch.get_rng_state(),
        "python": {"version": version, "state": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {
            "kind": numpy_kind,
            "state": torch.from_numpy(numpy_words.astype(np.int64)),
            "pos": int(numpy_pos),
            "has_gauss": int(numpy_has_gauss),
            "cached_gaussian": float(numpy_gauss),
        },
        "torch_cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = [generator_state.cpu() for generator_state in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch_cpu"])
    python = state["python"]
    random.setstate((python["version"], tuple(int(word) for word in python["state"].tolist()), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["state"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    cuda_states = state.get("torch_cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)

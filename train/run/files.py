"""The run folder's exported pair: ``model.safetensors`` (weights) + ``run.json`` (everything else).

This pair is what ``cifar-export`` reads. Both files are written atomically; nothing in them is pickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import nn

from cifar_edge.runtime.atomic_io import atomic_write_bytes, atomic_write_text
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.layout import RUN_JSON, WEIGHTS_FILE
from cifar_edge.train.models import build_model

RUN_RECORD_SCHEMA = 1


class RunFolderError(ValueError):
    """A run folder is missing files or holds something we cannot trust."""


@dataclass(frozen=True)
class LoadedRun:
    run_dir: Path
    model: nn.Module  # in eval mode
    record: dict[str, Any]
    contract: Contract
    weights_sha256: str


def save_model_files(run_dir: str | Path, model: nn.Module, record: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``run.json``.

    ``record`` must hold at least ``architecture`` ({"name", "kwargs"}) and ``contract`` (a Contract dict).
    """
    run_dir = Path(run_dir)
    for key in ("architecture", "contract"):
        if key not in record:
            raise ValueError(f"run record needs {key!r}")
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    weights = safetensors.torch.save(state, metadata={"format": "pt"})
    atomic_write_bytes(run_dir / WEIGHTS_FILE, weights)
    full_record = {"record_schema": RUN_RECORD_SCHEMA, **record}
    full_record["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    atomic_write_text(run_dir / RUN_JSON, json.dumps(full_record, indent=2, sort_keys=True) + "\n")


def read_run_record(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        raise RunFolderError(f"{path}: not found (is {run_dir} a cifar-train run folder?)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunFolderError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(record, dict) or "architecture" not in record or "contract" not in record:
        raise RunFolderError(f"{path}: missing 'architecture' or 'contract'")
    return record


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild the trained model from a run folder (weights via safetensors only, never pickle)."""
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    contract = Contract.from_dict(record["contract"])
    weights_path = run_dir / WEIGHTS_FILE
    if not weights_path.is_file():
        raise RunFolderError(f"{weights_path}: not found")
    weights = weights_path.read_bytes()
    architecture = record["architecture"]
    model = build_model(architecture["name"], **architecture.get("kwargs", {}))
    try:
        state = safetensors.torch.load(weights)
        model.load_state_dict(state, strict=True)
    except Exception as error:  # safetensors raises its own error types; report them uniformly
        raise RunFolderError(f"{weights_path}: cannot load weights ({error})") from None
    model.eval()
    return LoadedRun(
        run_dir=run_dir,
        model=model,
        record=record,
        contract=contract,
        weights_sha256=hashlib.sha256(weights).hexdigest(),
    )

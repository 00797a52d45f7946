"""The run folder: choosing it (``runs/<timestamp>``, a ``runs/latest`` pointer, --resume), and its exported pair
``model.safetensors`` (weights) + ``run.json`` (everything else), which is what ``cifar-export`` reads.

Both files are written atomically; nothing in them is pickled. ``checkpoint.pt`` has its own module (checkpoint.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import nn

from cifar_edge.runtime.common.atomic_io import atomic_write_bytes, atomic_write_text, write_error
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.common.names import CHECKPOINT_FILE, LATEST_LINK, RUN_JSON, WEIGHTS_FILE
from cifar_edge.runtime.contract import Contract, ContractError
from cifar_edge.runtime.model_file import latest_run_dir
from cifar_edge.train.models import ArchitectureError, build_model, check_model_arguments, declared_num_classes
from cifar_edge.train.recipes import TTA_MODES

RUN_RECORD_SCHEMA = 1


def new_run_dir(runs_root: str | Path, now: datetime | None = None) -> Path:
    """Create and return ``runs_root/<YYYY-mm-dd_HH-MM-SS>`` (with a -2, -3... suffix if that name is taken)."""
    runs_root = Path(runs_root)
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(runs_root, error) from None
    stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    for attempt in range(1, 1000):
        candidate = runs_root / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as error:
            raise write_error(candidate, error) from None
        return candidate
    raise ValueError(f"{runs_root}: cannot find a free run folder name for {stamp}")


def point_latest(runs_root: str | Path, run_dir: Path) -> Path:
    """Make ``runs_root/latest`` a relative symlink to ``run_dir``; where symlinks fail, a text file naming it."""
    runs_root = Path(runs_root)
    pointer = runs_root / LATEST_LINK
    temp_link = runs_root / f".{LATEST_LINK}.{os.getpid()}.tmp"
    try:
        temp_link.unlink(missing_ok=True)
        os.symlink(run_dir.name, temp_link, target_is_directory=True)
        if pointer.is_dir() and not pointer.is_symlink():
            raise OSError(f"{pointer} is a real folder")
        os.replace(temp_link, pointer)  # atomic: readers never see a missing pointer
    except OSError:
        temp_link.unlink(missing_ok=True)
        if pointer.is_symlink():
            pointer.unlink()
        if pointer.is_dir():
            return pointer  # someone's real folder named "latest": leave it alone
        atomic_write_text(pointer, run_dir.name + "\n")
    return pointer


def resolve_resume_dir(path: str | Path) -> Path:
    """The run folder ``path`` names: a run folder, a ``latest`` symlink, or a ``latest`` pointer file."""
    path = Path(path)
    if path.name == LATEST_LINK and path.is_file():  # the text pointer left where symlinks fail (the runtime's reader)
        path = latest_run_dir(path.parent) or path
    if not (path / CHECKPOINT_FILE).is_file():
        raise ValueError(f"--resume {path}: no {CHECKPOINT_FILE} there (is it a cifar-train run folder?)")
    return path


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
    """run.json as a dict whose fields this package reads have the right JSON types; RunFolderError otherwise."""
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        raise RunFolderError(f"{path}: not found (is {run_dir} a cifar-train run folder?)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise RunFolderError(f"{path}: not valid JSON ({first_line(error)})") from None
    except OSError as error:
        raise RunFolderError(f"{path}: cannot read ({error.strerror or first_line(error)})") from None
    if not isinstance(record, dict) or "architecture" not in record or "contract" not in record:
        raise RunFolderError(f"{path}: missing 'architecture' or 'contract'")
    schema = record.get("record_schema", RUN_RECORD_SCHEMA)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise RunFolderError(f"{path}: record_schema must be an integer >= 1, got {schema!r}")
    if schema > RUN_RECORD_SCHEMA:
        raise RunFolderError(f"{path}: record_schema {schema} is newer than this cifar-edge reads; upgrade cifar-edge")
    _check_architecture(record["architecture"], path)
    for key in ("data", "metrics", "config", "recipe", "environment"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            raise RunFolderError(f"{path}: {key} must be an object")
    spec = (record.get("data") or {}).get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise RunFolderError(f"{path}: data.spec must be an object")
    return record


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild the trained model from a run folder (weights via safetensors only, never pickle).

    Every problem is a one-line RunFolderError naming the file and the field.
    """
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    path = run_dir / RUN_JSON
    try:
        contract = Contract.from_dict(record["contract"])
    except ContractError as error:
        raise RunFolderError(f"{path}: contract: {first_line(error)}") from None
    weights_path = run_dir / WEIGHTS_FILE
    if not weights_path.is_file():
        raise RunFolderError(f"{weights_path}: not found")
    model = build_recorded_model(record["architecture"], contract, path)
    try:
        weights = weights_path.read_bytes()
        state = safetensors.torch.load(weights)
        model.load_state_dict(state, strict=True)
    except Exception as error:  # safetensors raises its own error types; report them uniformly
        raise RunFolderError(f"{weights_path}: cannot load weights ({first_line(error)})") from None
    model.eval()
    return LoadedRun(
        run_dir=run_dir,
        model=model,
        record=record,
        contract=contract,
        weights_sha256=hashlib.sha256(weights).hexdigest(),
    )


def build_recorded_model(architecture: Any, contract: Contract, source: Path) -> nn.Module:
    """A fresh model from a recorded ``{"name", "kwargs"}`` (run.json or checkpoint.pt ``source``) for ``contract``.

    RunFolderError naming ``source`` and the field when the record cannot describe a model.
    """
    _check_architecture(architecture, source)
    name, kwargs = architecture["name"], architecture.get("kwargs") or {}
    try:
        check_model_arguments(name, kwargs)
    except ArchitectureError as error:
        raise RunFolderError(f"{source}: architecture: {first_line(error)}") from None
    classes = declared_num_classes(name, kwargs)
    if classes is not None and classes != contract.num_classes:
        raise RunFolderError(
            f"{source}: architecture.kwargs.num_classes is {classes}, but the contract names "
            f"{contract.num_classes} classes"
        )
    try:
        return build_model(name, **kwargs)
    except ArchitectureError as error:
        raise RunFolderError(f"{source}: architecture: {first_line(error)}") from None


def _check_architecture(architecture: Any, source: Path) -> None:
    if not isinstance(architecture, dict):
        raise RunFolderError(f"{source}: architecture must be an object with 'name' and 'kwargs'")
    if not isinstance(architecture.get("name"), str):
        raise RunFolderError(f"{source}: architecture.name must be a string, got {architecture.get('name')!r}")
    if not isinstance(architecture.get("kwargs") or {}, dict):
        raise RunFolderError(f"{source}: architecture.kwargs must be an object")
    if not isinstance(architecture.get("tta", "none"), (str, type(None))):
        raise RunFolderError(f"{source}: architecture.tta must be a string")
    if (architecture.get("tta") or "none") not in TTA_MODES:
        raise RunFolderError(f"{source}: architecture.tta={architecture['tta']!r} is not one of {', '.join(TTA_MODES)}")

"""Open any cifar-edge model as something the evaluation core can run: PyTorch, TorchScript, torch.export or ONNX.

Kinds, recognised in this order (docs/evaluation.md, "Models"):

- a folder: a cifar-train run folder (``run.json`` + ``model.safetensors``), weights read with safetensors only;
- ``*.onnx``: through the torch-free runtime's ``Classifier`` (onnxruntime, strict providers as in cifar-infer);
- ``*.pt2``: a ``torch.export`` program written by cifar-export;
- another zip written by torch: TorchScript (it has ``code/`` and ``constants.pkl``) or a training checkpoint
  (``checkpoint.pt``, read with ``torch.load(weights_only=True)`` only; its weight average when it has one, which
  is what the run folder's ``model.safetensors`` holds);
- anything else is tried as ONNX (the runtime checks the file before trusting it).

torch, safetensors and the training code are imported only for the torch kinds: evaluating an ONNX model loads
none of them. TorchScript and ``.pt2`` files can run code when loaded: evaluate only files you made or trust.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_edge.export.engines import METADATA_KEYS, Engine, onnx_engine, torch_device, torch_engine
from cifar_edge.runtime.common.command import first_line, missing_module, needs_extra
from cifar_edge.runtime.common.names import RUN_JSON, WEIGHTS_FILE
from cifar_edge.runtime.contract import Contract, ContractError
from cifar_edge.runtime.passes import describe_passes, passes_per_image
from cifar_edge.runtime.providers.strict import default_intra_op_threads

TORCH_KINDS = ("run", "checkpoint", "torchscript", "exportedprogram")
KIND_LABELS = {
    "run": "PyTorch (run folder)",
    "checkpoint": "PyTorch (checkpoint)",
    "torchscript": "TorchScript",
    "exportedprogram": "torch.export",
    "onnx": "ONNX",
}


class ModelLoadError(ValueError):
    """The model cannot be used; ``str()`` is one line naming the file and the problem (exit code 2)."""


@dataclass
class OpenedModel:
    """A model ready to evaluate: ``engine`` runs it on float32 NCHW batches (export/engines.py)."""

    path: Path
    kind: str  # one of TORCH_KINDS or "onnx"
    contract: Contract
    engine: Engine
    precision: str = "fp32"
    provider: str = "cpu"  # "cpu" or "cuda": where it really runs
    provenance: dict[str, Any] | None = None
    sha256: str | None = None
    threads: int | None = None
    streams: int = 1  # session runs at once, each on part of a batch (runtime/streams.py)
    notes: list[str] = field(default_factory=list)
    # The TTA a run folder's or checkpoint's module is wrapped with; artifacts record theirs in their provenance.
    tta: str | None = None

    def close(self) -> None:
        self.engine.close()

    @property
    def artifact_file(self) -> Path:
        """The file that holds the weights (a run folder's model.safetensors)."""
        return self.path / WEIGHTS_FILE if self.kind == "run" else self.path

    def info(self) -> dict[str, Any]:
        provenance = self.provenance or {}
        source = provenance.get("source") if isinstance(provenance.get("source"), dict) else {}
        passes_from = {"tta": self.tta} if self.tta is not None else self.provenance
        return {
            "path": str(self.path),
            "kind": self.kind,
            "format": KIND_LABELS[self.kind],
            "precision": self.precision,
            "provider": self.provider,
            "threads": self.threads,
            "streams": self.streams,
            "sha256": self.sha256,
            "classes": list(self.contract.class_names),
            "image_size": list(self.contract.image_size),
            "passes_per_image": passes_per_image(passes_from),
            "passes": describe_passes(passes_from),
            "exported_from": {
                "run_name": source.get("run_name"),
                "weights_sha256": source.get("weights_sha256"),
                "exporter": provenance.get("exporter"),
                "exported_at": provenance.get("exported_at"),
            }
            if provenance
            else None,
            "notes": self.notes,
        }


def detect_kind(path: Path) -> str:
    if path.is_dir():
        if not (path / RUN_JSON).is_file():
            raise ModelLoadError(f"{path}: a folder, but not a cifar-train run folder (no {RUN_JSON})")
        return "run"
    if not path.exists():
        raise ModelLoadError(f"{path}: model not found")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".pt2":
        return "exportedprogram"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise ModelLoadError(f"{path}: unreadable zip archive ({error})") from None
        if any(name.endswith("constants.pkl") or "/code/" in name for name in names):
            return "torchscript"
        if any(name.endswith("data.pkl") for name in names):
            return "checkpoint"
        raise ModelLoadError(f"{path}: a zip archive that is neither TorchScript nor a torch checkpoint")
    return "onnx"


def open_model(
    path: str | os.PathLike[str],
    provider: str = "auto",
    *,
    threads: int | None = None,
    batch_size: int = 256,
    max_pixels: int | None = None,
) -> OpenedModel:
    """Open ``path`` on ``provider`` (auto|cpu|cuda|tensorrt). ModelLoadError (exit 2) or
    ProviderUnavailableError (exit 3) when it cannot be used as asked."""
    path = Path(path)
    kind = detect_kind(path)
    if kind == "onnx":
        return _open_onnx(path, provider, threads, batch_size, max_pixels)
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as error:
        subject = f"{path}: evaluating a {KIND_LABELS[kind]} model"
        message = needs_extra("train", missing_module(error) or "torch", subject)
        raise ModelLoadError(f"{message}; or evaluate the exported .onnx file") from None
    return _open_torch(path, kind, provider, threads)


def _open_onnx(path: Path, provider: str, threads: int | None, batch_size: int, max_pixels: int | None) -> OpenedModel:
    from cifar_edge.runtime.model_file import ModelError

    try:
        engine = onnx_engine(path, provider, batch_size=batch_size, intra_op_threads=threads, max_pixels=max_pixels)
    except ModelError as error:
        raise ModelLoadError(str(error)) from None
    classifier = engine.classifier
    provenance = classifier.provenance or {}
    notes = [classifier.note] if classifier.note else []
    return OpenedModel(
        path=path,
        kind="onnx",
        contract=classifier.contract,
        engine=engine,
        precision=str(provenance.get("precision") or _input_precision(classifier)),
        provider=classifier.provider,
        provenance=classifier.provenance,
        sha256=classifier.sha256,
        threads=classifier.intra_op_threads,
        streams=classifier.streams,
        notes=notes,
    )


def _input_precision(classifier: Any) -> str:
    return "fp16" if classifier.io.input_type == "tensor(float16)" else "fp32"


def _open_torch(path: Path, kind: str, provider: str, threads: int | None) -> OpenedModel:
    import torch

    device = torch_device(provider)
    # The same default as onnxruntime's in the runtime (all usable cores).
    torch.set_num_threads(threads or default_intra_op_threads())
    provenance: dict[str, Any] | None = None
    precision, tta = "fp32", None
    try:
        if kind == "run":
            module, contract, sha256, tta = load_run_module(path)
        elif kind == "checkpoint":
            module, contract, tta = load_checkpoint_module(path)
            sha256 = _file_sha256(path)
        else:
            module, contract, provenance = load_torch_artifact(path, kind)
            sha256 = _file_sha256(path)
            precision = str((provenance or {}).get("precision") or "fp32")
    except ModelLoadError:
        raise
    except ModuleNotFoundError as error:
        module = missing_module(error)
        if module is None:
            raise
        raise ModelLoadError(needs_extra("train", module, f"{path}: evaluating a {KIND_LABELS[kind]} model")) from None
    except Exception as error:  # torch and safetensors raise many types: one line for the user
        raise ModelLoadError(f"{path}: cannot load {KIND_LABELS[kind]} model ({first_line(error)})") from None
    module = module.to(device)
    return OpenedModel(
        path=path,
        kind=kind,
        contract=contract,
        engine=torch_engine(module, device, name=KIND_LABELS[kind]),
        precision=precision,
        provider=device,
        provenance=provenance,
        sha256=sha256,
        threads=torch.get_num_threads(),
        tta=tta,
    )


def load_run_module(run_dir: Path) -> tuple[Any, Contract, str, str]:
    """The run's eval-mode module (with the TTA its record asks for, exactly as cifar-export exports it), its
    contract, weights sha256 and TTA mode."""
    from cifar_edge.export.formats.tta import module_for_export, tta_mode
    from cifar_edge.train.run.files import RunFolderError, load_run

    try:
        run = load_run(run_dir)
    except (RunFolderError, ContractError) as error:
        raise ModelLoadError(first_line(error)) from None
    return module_for_export(run.model, run.record), run.contract, run.weights_sha256, tta_mode(run.record)


def load_checkpoint_module(path: Path) -> tuple[Any, Contract, str]:
    """checkpoint.pt (weights_only=True) -> eval-mode module (its weight average when present, else its weights),
    its contract and TTA mode."""
    from cifar_edge.export.formats.tta import module_for_export, tta_mode
    from cifar_edge.train.run.checkpoint import CheckpointError, read_checkpoint
    from cifar_edge.train.run.files import RunFolderError, build_recorded_model

    try:
        payload = read_checkpoint(path)
    except CheckpointError as error:
        raise ModelLoadError(str(error)) from None
    architecture, contract_data = payload.get("architecture"), payload.get("contract")
    if not isinstance(architecture, dict) or not isinstance(contract_data, dict):
        raise ModelLoadError(f"{path}: checkpoint has no architecture or contract record")
    try:
        contract = Contract.from_dict(contract_data)
    except ContractError as error:
        raise ModelLoadError(f"{path}: {error}") from None
    state = payload.get("weight_average") or payload.get("model")
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path}: checkpoint holds no model weights")
    try:
        model = build_recorded_model(architecture, contract, path)
    except RunFolderError as error:
        raise ModelLoadError(str(error)) from None
    model.load_state_dict(state, strict=True)
    record = {"architecture": architecture}
    return module_for_export(model, record), contract, tta_mode(record)


def load_torch_artifact(path: Path, kind: str) -> tuple[Any, Contract, dict[str, Any] | None]:
    """A TorchScript or .pt2 file written by cifar-export, with the contract it carries."""
    from cifar_edge.export.formats.metadata import read_entries

    if kind == "torchscript":
        from cifar_edge.export.formats.torchscript import load_torchscript

        module, extra_files = load_torchscript(path, METADATA_KEYS)
    else:
        from cifar_edge.export.formats.exported_program import load_program

        module, extra_files = load_program(path, METADATA_KEYS)
    try:
        contract, provenance = read_entries({key: value for key, value in extra_files.items() if value})
    except (ContractError, ValueError, KeyError) as error:
        raise ModelLoadError(f"{path}: {first_line(error)}") from None
    return module, contract, provenance


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

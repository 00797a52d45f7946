"""Open any cifar-edge model as an Engine: a run folder, a training checkpoint, or any artifact of the format table.

The one opener behind ``cifar-eval``, ``cifar-bench`` and the benchmark's cold-start processes. Kinds, recognised in
this order (docs/evaluation.md, "Models"):

- a folder: a cifar-train run folder (``run.json`` + ``model.safetensors``), weights read with safetensors only;
- a file whose suffix only one format of the table writes (``*.onnx``, ``*.pt2``);
- another zip written by torch: a format whose markers it holds (TorchScript: ``code/`` and ``constants.pkl``), or a
  training checkpoint (``checkpoint.pt``, read with ``torch.load(weights_only=True)`` only; its weight average when
  it has one, which is what the run folder's ``model.safetensors`` holds);
- anything else is tried as ONNX (the runtime checks the file before trusting it).

ONNX runs through the torch-free runtime's ``Classifier`` (strict providers, as in cifar-infer); torch, safetensors
and the training code are imported only for the torch kinds. TorchScript and ``.pt2`` files can run code when
loaded: open only files you made or trust.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cifar_edge.export.engines import Engine, OpenOptions, torch_device, torch_engine
from cifar_edge.export.formats import ONNX, ROWS, format_of_folder, format_of_suffix, format_of_zip, row_of
from cifar_edge.export.formats.metadata import read_entries
from cifar_edge.runtime.common.command import ExitCode, first_line, missing_module, needs_extra
from cifar_edge.runtime.common.names import RUN_JSON, WEIGHTS_FILE
from cifar_edge.runtime.contract import Contract, ContractError
from cifar_edge.runtime.model_file import describe_passes, passes_per_image
from cifar_edge.runtime.session import default_intra_op_threads

RUN = "run"
CHECKPOINT = "checkpoint"
# What a kind is called in reports: the table's label for each format, and the two kinds of a run's own weights.
KIND_LABELS = {RUN: "PyTorch (run folder)", CHECKPOINT: "PyTorch (checkpoint)"}
KIND_LABELS |= {row.format: row.label for row in ROWS}


class ModelLoadError(ValueError):
    """The model cannot be used; ``str()`` is one line naming the file and the problem (exit code 2)."""

    exit_code = ExitCode.USAGE


@dataclass
class OpenedModel:
    """A model ready to evaluate or time: ``engine`` runs it on float32 NCHW batches (export/engines.py)."""

    path: Path
    kind: str  # RUN, CHECKPOINT or a format of the table
    contract: Contract
    engine: Engine
    precision: str = "fp32"
    provider: str = "cpu"  # "cpu" or "cuda": where it really runs
    provenance: dict[str, Any] | None = None
    sha256: str | None = None
    threads: int | None = None
    streams: int = 1  # session runs at once, each on part of a batch (runtime/session.py)
    notes: list[str] = field(default_factory=list)
    # The TTA a run folder's or checkpoint's module is wrapped with; artifacts record theirs in their provenance.
    tta: str | None = None

    def close(self) -> None:
        self.engine.close()

    @property
    def artifact_file(self) -> Path:
        """The file that holds the weights (a run folder's model.safetensors)."""
        return self.path / WEIGHTS_FILE if self.kind == RUN else self.path

    def info(self) -> dict[str, Any]:
        provenance = self.provenance or {}
        recorded = provenance.get("source")
        source: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
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
        if (path / RUN_JSON).is_file():
            return RUN
        by_folder = format_of_folder(path)
        if by_folder is None:
            raise ModelLoadError(
                f"{path}: a folder, but not a cifar-train run folder (no {RUN_JSON}) and not a Triton model repository"
            )
        return by_folder
    if not path.exists():
        raise ModelLoadError(f"{path}: model not found")
    by_suffix = format_of_suffix(path.suffix)
    if by_suffix is not None:
        return by_suffix
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise ModelLoadError(f"{path}: unreadable zip archive ({error})") from None
        by_markers = format_of_zip(names)
        if by_markers is not None:
            return by_markers
        if any(name.endswith("data.pkl") for name in names):
            return CHECKPOINT
        raise ModelLoadError(f"{path}: a zip archive that is neither TorchScript nor a torch checkpoint")
    return ONNX


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
    options = OpenOptions(provider=provider, threads=threads, batch_size=batch_size, max_pixels=max_pixels)
    if kind not in (RUN, CHECKPOINT) and not row_of(kind).needs_torch:
        return _open_runtime(path, kind, options)
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as error:
        subject = f"{path}: evaluating a {KIND_LABELS[kind]} model"
        message = needs_extra("train", missing_module(error) or "torch", subject)
        raise ModelLoadError(f"{message}; or evaluate the exported .onnx file") from None
    return _open_torch(path, kind, options)


def _open_runtime(path: Path, kind: str, options: OpenOptions) -> OpenedModel:
    """A format the torch-free runtime runs (ONNX), with what its Classifier knows about it."""
    from cifar_edge.runtime.model_file import ModelError

    try:
        engine = row_of(kind).open(path, options)
    except ModelError as error:
        raise ModelLoadError(str(error)) from None
    classifier = engine.classifier
    provenance = classifier.provenance or {}
    notes = [classifier.note] if classifier.note else []
    return OpenedModel(
        path=path,
        kind=kind,
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


class TorchModel(NamedTuple):
    """What a torch kind is opened into, before it becomes an OpenedModel."""

    engine: Engine
    contract: Contract
    provenance: dict[str, Any] | None = None
    tta: str | None = None
    sha256: str | None = None  # None: the file's own


def _open_torch(path: Path, kind: str, options: OpenOptions) -> OpenedModel:
    import torch

    device = torch_device(options.provider)
    # The same default as onnxruntime's in the runtime (all usable cores).
    torch.set_num_threads(options.threads or default_intra_op_threads())
    try:
        if kind == RUN:
            opened = load_run_module(path, device)
        elif kind == CHECKPOINT:
            opened = load_checkpoint_module(path, device)
        else:
            opened = load_torch_artifact(path, kind, device)
    except ModelLoadError:
        raise
    except ModuleNotFoundError as error:
        missing = missing_module(error)
        if missing is None:
            raise
        raise ModelLoadError(needs_extra("train", missing, f"{path}: evaluating a {KIND_LABELS[kind]} model")) from None
    except Exception as error:  # torch and safetensors raise many types: one line for the user
        raise ModelLoadError(f"{path}: cannot load {KIND_LABELS[kind]} model ({first_line(error)})") from None
    return OpenedModel(
        path=path,
        kind=kind,
        contract=opened.contract,
        engine=opened.engine,
        precision=str((opened.provenance or {}).get("precision") or "fp32"),
        provider=device,
        provenance=opened.provenance,
        sha256=opened.sha256 or _file_sha256(path),
        threads=torch.get_num_threads(),
        tta=opened.tta,
    )


def load_run_module(run_dir: Path, device: str = "cpu") -> TorchModel:
    """The run's eval-mode module (with the TTA its record asks for, exactly as cifar-export exports it), its
    contract, weights sha256 and TTA mode."""
    from cifar_edge.train.run_folder import RunFolderError, load_run
    from cifar_edge.train.tta import module_for_export, tta_mode

    try:
        run = load_run(run_dir)
    except (RunFolderError, ContractError) as error:
        raise ModelLoadError(first_line(error)) from None
    module = module_for_export(run.model, run.record).to(device)
    engine = torch_engine(module, device, name=KIND_LABELS[RUN])
    return TorchModel(engine, run.contract, tta=tta_mode(run.record), sha256=run.weights_sha256)


def load_checkpoint_module(path: Path, device: str = "cpu") -> TorchModel:
    """checkpoint.pt (weights_only=True) -> eval-mode module (its weight average when present, else its weights),
    its contract and TTA mode."""
    from cifar_edge.train.checkpoint import CheckpointError, read_checkpoint
    from cifar_edge.train.run_folder import RunFolderError, build_recorded_model
    from cifar_edge.train.tta import module_for_export, tta_mode

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
    module = module_for_export(model, record).to(device)
    return TorchModel(torch_engine(module, device, name=KIND_LABELS[CHECKPOINT]), contract, tta=tta_mode(record))


def load_torch_artifact(path: Path, kind: str, device: str = "cpu") -> TorchModel:
    """A torch artifact of the format table (TorchScript, .pt2) through its row's opener, with the contract and
    provenance it carries."""
    engine = row_of(kind).open(path, OpenOptions(provider=device))
    try:
        contract, provenance = read_entries({key: value for key, value in engine.metadata.items() if value})
    except (ContractError, ValueError, KeyError) as error:
        engine.close()
        raise ModelLoadError(f"{path}: {first_line(error)}") from None
    return TorchModel(engine, contract, provenance=provenance)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

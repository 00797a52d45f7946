"""Contract + provenance JSON that travels inside every artifact.

ONNX: ``metadata_props`` entries; TorchScript: ``_extra_files``; exported program (``.pt2``): ``extra_files`` of
``torch.export.save``. All three use the key names CONTRACT_METADATA_KEY and PROVENANCE_METADATA_KEY.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from importlib import metadata as package_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifar_edge.runtime.common.names import WEIGHTS_FILE
from cifar_edge.runtime.contract import CONTRACT_METADATA_KEY, PROVENANCE_METADATA_KEY, Contract, ContractError

if TYPE_CHECKING:  # types only: reading an artifact's entries (cifar-eval of an ONNX file) loads neither
    import onnx

    from cifar_edge.train.run_folder import LoadedRun

PROVENANCE_SCHEMA = 1
# The two entries every artifact carries, under these names whatever its format.
METADATA_KEYS = (CONTRACT_METADATA_KEY, PROVENANCE_METADATA_KEY)
_VERSIONED_PACKAGES = ("cifar-edge", "torch", "torchvision", "onnx", "onnxscript", "onnxruntime", "safetensors")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def build_provenance(
    run: LoadedRun,
    *,
    artifact_format: str,
    precision: str,
    exporter: str,
    tta: str,
    opset: int | None = None,
    input_form: str = "float",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Where the artifact came from and how it was made (JSON-serialisable); ``input_form``: what the file takes
    (the contract inside says the same, runtime/contract.py INPUT_FORMS)."""
    record = run.record
    provenance: dict[str, Any] = {
        "provenance_schema": PROVENANCE_SCHEMA,
        "format": artifact_format,
        "precision": precision,
        "exporter": exporter,
        "opset": opset,
        "tta": tta,
        "input_form": input_form,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {
            "run_dir": str(Path(run.run_dir).resolve()),
            "run_name": Path(run.run_dir).resolve().name,
            "weights_file": WEIGHTS_FILE,
            "weights_sha256": run.weights_sha256,
            "architecture": record.get("architecture"),
        },
        "metrics": record.get("metrics"),
        "versions": package_versions(),
    }
    if extra:
        provenance.update(extra)
    return provenance


def metadata_entries(contract: Contract, provenance: dict[str, Any]) -> dict[str, str]:
    """The two JSON strings, keyed as every artifact format stores them."""
    return {
        CONTRACT_METADATA_KEY: contract.to_json(),
        PROVENANCE_METADATA_KEY: json.dumps(provenance, sort_keys=True),
    }


def embed_in_onnx(model: onnx.ModelProto, contract: Contract, provenance: dict[str, Any]) -> onnx.ModelProto:
    """Set (replace) our entries in ``model.metadata_props``; other tools' entries are kept."""
    entries = metadata_entries(contract, provenance)
    kept = [prop for prop in model.metadata_props if prop.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = f"cifar-edge classifier ({len(contract.class_names)} classes), {provenance['precision']}"
    return model


def read_entries(entries: dict[str, str | bytes]) -> tuple[Contract, dict[str, Any]]:
    """Parse the two JSON entries (values may be bytes, as TorchScript's _extra_files returns them)."""

    def text(key: str) -> str:
        if key not in entries:
            raise ContractError(f"artifact carries no {key!r} metadata (not exported by cifar-export?)")
        value = entries[key]
        return value.decode("utf-8") if isinstance(value, bytes) else value

    return Contract.from_json(text(CONTRACT_METADATA_KEY)), json.loads(text(PROVENANCE_METADATA_KEY))

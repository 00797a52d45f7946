"""Content-keyed uint8 cache of a decoded image folder: decode 50,000 files once, load them in about a second after.

The key is a SHA-256 over everything that decides the pixels: every file's path (relative to the dataset root, so a
moved copy still hits), label and bytes, the target size and resize filter, the alpha background, the class names,
the Pillow version, the source of the runtime's decode/resize code, and this cache's format version. Cache files are
``.npz`` (no pickles; loaded with ``allow_pickle=False``), written atomically, and fully checked when read (zip CRCs,
key, shapes, dtypes, label range): a file that fails any check is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from rich.progress import Progress

import cifar_edge.runtime.images as runtime_images
import cifar_edge.runtime.preprocess as runtime_preprocess
from cifar_edge.runtime.common.atomic_io import atomic_path
from cifar_edge.runtime.contract import Contract
from cifar_edge.train.data.folder import ImageFolderFiles

# Bump whenever what a cache file holds, or how its pixels are made, changes in a way the key would not notice.
CACHE_FORMAT_VERSION = 1
_ARRAY_NAMES = (
    "meta",
    "class_names",
    "train_images",
    "train_labels",
    "held_out_images",
    "held_out_labels",
    "skipped_paths",
    "skipped_reasons",
)


@dataclass(frozen=True)
class DecodedFolder:
    class_names: tuple[str, ...]
    train_images: np.ndarray  # uint8 (N, H, W, 3); only the images that decoded
    train_labels: np.ndarray  # int64 (N,)
    held_out_images: np.ndarray  # uint8 (M, H, W, 3); empty without a held-out folder
    held_out_labels: np.ndarray  # int64 (M,)
    skipped: tuple[tuple[str, str], ...]  # (path relative to the dataset root, reason), in file order


def default_cache_dir() -> Path:
    """``$CIFAR_EDGE_CACHE``, else ``$XDG_CACHE_HOME/cifar-edge``, else ``~/.cache/cifar-edge``."""
    if os.environ.get("CIFAR_EDGE_CACHE"):
        return Path(os.environ["CIFAR_EDGE_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "cifar-edge"


def cache_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / "datasets" / f"{key}.npz"


def relative_path(path: str, root: Path) -> str:
    # Discovery builds every path as os.path.join(root, ...), so a prefix cut is exact (and much faster than relpath).
    return path[len(str(root)) + 1 :].replace(os.sep, "/")


def content_key(files: ImageFolderFiles, contract: Contract, progress: Progress | None = None) -> str:
    """SHA-256 (hex) over the dataset's files and every setting that changes the decoded pixels."""
    header = {
        "format": CACHE_FORMAT_VERSION,
        "image_size": list(contract.image_size),
        "resize_method": contract.resize_method,
        "alpha_background": list(contract.alpha_background),
        "class_names": list(files.class_names),
        "held_out": files.held_out_name,
        "decoder": _decoder_fingerprint(),
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    groups = (
        ("train", files.train_files, files.train_labels),
        ("held_out", files.held_out_files, files.held_out_labels),
    )
    total = len(files.train_files) + len(files.held_out_files)
    task = progress.add_task(f"Hashing {total:,} files", total=total, unit="files") if progress is not None else None
    done = 0
    for group, paths, labels in groups:
        for path, label in zip(paths, labels.tolist(), strict=True):
            try:
                with open(path, "rb") as handle:
                    content = handle.read()
            except OSError as error:  # the decoder reports it as skipped; the key just has to differ from a good read
                content = f"unreadable: {error.strerror}".encode()
            digest.update(f"\n{group}\0{relative_path(path, files.root)}\0{label}\0{len(content)}\n".encode())
            digest.update(content)
            done += 1
            if progress is not None and task is not None and done % 1000 == 0:
                progress.update(task, completed=done)
    if progress is not None and task is not None:
        progress.update(task, completed=total)
    return digest.hexdigest()


def _decoder_fingerprint() -> dict[str, str]:
    # Training pixels must equal what the runtime computes; when its decode/resize code or Pillow changes, re-decode.
    source = hashlib.sha256()
    for module in (runtime_images, runtime_preprocess):
        source.update(Path(module.__file__ or "").read_bytes())
    return {"pillow": PIL.__version__, "runtime_code_sha256": source.hexdigest()}


def write_cache(path: Path, key: str, decoded: DecodedFolder) -> str | None:
    """Write ``decoded`` atomically; returns None, or a one-line reason when the cache could not be written."""
    meta = {"format": CACHE_FORMAT_VERSION, "key": key}
    arrays: dict[str, Any] = {
        "meta": np.array(json.dumps(meta)),
        "class_names": np.array(decoded.class_names, dtype=str),
        "train_images": decoded.train_images,
        "train_labels": decoded.train_labels.astype(np.int64),
        "held_out_images": decoded.held_out_images,
        "held_out_labels": decoded.held_out_labels.astype(np.int64),
        "skipped_paths": np.array([path for path, _ in decoded.skipped], dtype=str),
        "skipped_reasons": np.array([reason for _, reason in decoded.skipped], dtype=str),
    }
    try:
        with atomic_path(path) as temp_path, open(temp_path, "wb") as handle:
            np.savez(handle, **arrays)
    except OSError as error:
        return f"cannot write the data cache {path} ({error.strerror or error}); the next run decodes again"
    return None


def read_cache(path: Path, key: str, image_size: tuple[int, int]) -> tuple[DecodedFolder | None, str | None]:
    """``(decoded, None)`` on a good hit, ``(None, None)`` when absent, ``(None, reason)`` when it must be rebuilt."""
    if not path.is_file():
        return None, None
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                return None, "not an .npz archive"
            missing = [name for name in _ARRAY_NAMES if name not in archive.files]
            if missing:
                return None, f"missing arrays {', '.join(missing)}"
            # Reading each member in full makes zipfile verify its CRC-32: a flipped byte raises BadZipFile.
            arrays = {name: archive[name] for name in _ARRAY_NAMES}
        meta = json.loads(str(arrays["meta"][()]))
        problem = _check_arrays(meta, arrays, key, image_size)
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as error:
        return None, " ".join(f"{type(error).__name__}: {error}".split())
    if problem:
        return None, problem
    return (
        DecodedFolder(
            class_names=tuple(str(name) for name in arrays["class_names"].tolist()),
            train_images=arrays["train_images"],
            train_labels=arrays["train_labels"],
            held_out_images=arrays["held_out_images"],
            held_out_labels=arrays["held_out_labels"],
            skipped=tuple(zip(arrays["skipped_paths"].tolist(), arrays["skipped_reasons"].tolist(), strict=True)),
        ),
        None,
    )


def _check_arrays(meta: Any, arrays: dict[str, np.ndarray], key: str, image_size: tuple[int, int]) -> str | None:
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT_VERSION or meta.get("key") != key:
        return "format or key does not match"
    num_classes = len(arrays["class_names"])
    for split in ("train", "held_out"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 or images.shape[1:] != (*image_size, 3) or images.ndim != 4:
            return f"{split} images have dtype {images.dtype} and shape {images.shape}"
        if labels.dtype != np.int64 or labels.shape != (len(images),):
            return f"{split} labels have dtype {labels.dtype} and shape {labels.shape}"
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            return f"{split} labels outside 0..{num_classes - 1}"
    if arrays["class_names"].ndim != 1 or arrays["skipped_paths"].shape != arrays["skipped_reasons"].shape:
        return "class names or skipped-file list malformed"
    return None

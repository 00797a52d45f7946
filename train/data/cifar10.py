"""CIFAR-10 through torchvision: downloaded into a data root when missing, returned as uint8 NHWC arrays at the
contract's image size (the training pool ``load_splits`` splits, and the official test split).

Security note: the CIFAR-10 batches are Python pickles. torchvision checks the MD5 of every batch file against the
checksums hard-coded for the official release before it unpickles anything (``CIFAR10._check_integrity`` and
``_load_meta``), and refuses the files otherwise. That check is what makes this the one pickle load we accept under
the project's "never unpickle untrusted data" rule; do not bypass it (e.g. by reading the batches ourselves).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import tarfile
import urllib.error
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import CIFAR10

from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.preprocess import resize_to_contract
from cifar_edge.train.data import DataError
from cifar_edge.train.data.split import check_arguments, first_per_class

# Seconds without a byte before a download attempt gives up (urllib's default is to wait forever).
DOWNLOAD_TIMEOUT_S = 60.0


def default_data_root() -> Path:
    """``$CIFAR_EDGE_DATA``, else ``$XDG_CACHE_HOME/cifar-edge/data``, else ``~/.cache/cifar-edge/data``."""
    if os.environ.get("CIFAR_EDGE_DATA"):
        return Path(os.environ["CIFAR_EDGE_DATA"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "cifar-edge" / "data"


def resolve_data_root(data_root: str | os.PathLike[str] | None) -> Path:
    root = default_data_root() if data_root is None else Path(data_root).expanduser()
    return Path(os.path.abspath(root))


def load_cifar10_arrays(data_root: Path, train: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``(images uint8 (N, 32, 32, 3), labels int64 (N,), class names)`` of the train or test split.

    Downloads (and verifies, and extracts) the official archive into ``data_root`` when the batches are missing or
    fail their checksums; any failure becomes a one-line DataError that says how to use a local copy instead.
    """
    downloading = False
    try:
        with _download_timeout(DOWNLOAD_TIMEOUT_S):
            try:
                dataset = CIFAR10(str(data_root), train=train, download=False)
            except RuntimeError:  # batches missing or failing their MD5: fetch the archive
                downloading = True
                dataset = CIFAR10(str(data_root), train=train, download=True)
    except (OSError, RuntimeError, tarfile.TarError, EOFError, zlib.error, pickle.UnpicklingError) as error:
        raise DataError(_unavailable_message(data_root, error, downloading)) from None
    images = np.ascontiguousarray(dataset.data, dtype=np.uint8)
    labels = np.asarray(dataset.targets, dtype=np.int64)
    return images, labels, tuple(str(name) for name in dataset.classes)


def cifar10_train_pool(
    root: Path, image_size: tuple[int, int], resize_method: str, limit_per_class: int | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """CIFAR-10's training batches in ``root`` (the first ``limit_per_class`` of each class), at ``image_size``."""
    images, labels, class_names = load_cifar10_arrays(root, train=True)
    if limit_per_class is not None:
        keep = first_per_class(labels, limit_per_class)
        images, labels = images[keep], labels[keep]
    images = resize_arrays(images, Contract(class_names, image_size=image_size, resize_method=resize_method))
    return images, labels, class_names


def load_cifar10_test(
    data_root: str | Path | None = None,
    *,
    image_size: tuple[int, int] = (32, 32),
    resize_method: str = "bilinear",
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's official 10,000 test images (uint8 (N, H, W, 3)) and labels (int64), downloaded when missing."""
    image_size = check_arguments(0.0, 0, image_size, resize_method, None)
    images, labels, class_names = load_cifar10_arrays(resolve_data_root(data_root), train=False)
    return resize_arrays(images, Contract(class_names, image_size=image_size, resize_method=resize_method)), labels


def resize_arrays(images: np.ndarray, contract: Contract) -> np.ndarray:
    """CIFAR-10's native 32x32 arrays are returned as they are; other contract sizes use the runtime's resize."""
    height, width = contract.image_size
    if images.shape[1:3] == (height, width):
        return images
    out = np.empty((len(images), height, width, 3), dtype=np.uint8)
    for index, pixels in enumerate(images):
        out[index] = resize_to_contract(Image.fromarray(pixels, "RGB"), contract)
    return out


def _unavailable_message(data_root: Path, error: BaseException, downloading: bool) -> str:
    folder = data_root / CIFAR10.base_folder
    tried = (
        f"CIFAR-10 is missing or incomplete in {folder} and downloading {CIFAR10.url} into {data_root} failed"
        if downloading
        else f"cannot read CIFAR-10 from {folder}"
    )
    message = (
        f"{tried} ({_reason(error)}); "
        f"to use a local copy, pass --data-root DIR where DIR/{CIFAR10.base_folder} holds the extracted python "
        "batches, or --data PATH for an image folder (PATH/train/<class>/*)"
    )
    return " ".join(message.split())


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"network error: {error.reason}"
    if isinstance(error, RuntimeError) and "corrupted" in str(error):
        return f"the downloaded files failed their MD5 check: {error}"
    return f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def _download_timeout(seconds: float) -> Iterator[None]:
    # torchvision's urlopen takes no timeout; a black-holed network would otherwise hang the run forever. Only set
    # when nothing else chose a default, and restored afterwards.
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)

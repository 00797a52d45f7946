"""The torchvision CIFAR-10 path, offline: a tiny archive in the exact CIFAR-10 python format, served on 127.0.0.1.

torchvision checks hard-coded MD5s of the official files, so the tests point ``CIFAR10.url`` and its checksums at
the tiny archive; everything else (download, MD5 checks, extraction, unpickling, our conversion) is the real code.
"""

from __future__ import annotations

import hashlib
import pickle
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import CIFAR10

from cifar_edge.runtime.contract import CIFAR10_CLASS_NAMES, Contract
from cifar_edge.runtime.preprocess import resize_to_contract
from cifar_edge.train.data.load import DataError, load_cifar10_test, load_splits

PER_BATCH = 20  # 5 batches x 20 = 100 training images, 10 per class
TEST_COUNT = 10


@dataclass
class TinyCifar:
    archive: Path
    train_images: np.ndarray  # uint8 (100, 32, 32, 3); image k has red value k at pixel (0, 0)
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    file_md5: dict[str, str]


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_tiny_cifar10(folder: Path) -> TinyCifar:
    """Write ``cifar-10-python.tar.gz`` holding ``cifar-10-batches-py/`` exactly as the official release lays it out."""
    rng = np.random.default_rng(0)
    count = 5 * PER_BATCH + TEST_COUNT
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(count)  # identifies each image after the split
    labels = np.arange(count) % 10
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)

    def write_batch(name: str, rows: slice) -> None:
        # Official layout: each row is 1024 red, then 1024 green, then 1024 blue bytes (channel-major).
        entry = {
            "batch_label": name,
            "labels": labels[rows].tolist(),
            "data": images[rows].transpose(0, 3, 1, 2).reshape(-1, 3072).copy(),
            "filenames": [f"image_{index}.png" for index in range(rows.start, rows.stop)],
        }
        (batches / name).write_bytes(pickle.dumps(entry, protocol=2))

    for batch in range(5):
        write_batch(f"data_batch_{batch + 1}", slice(batch * PER_BATCH, (batch + 1) * PER_BATCH))
    write_batch("test_batch", slice(5 * PER_BATCH, count))
    meta = {"label_names": list(CIFAR10_CLASS_NAMES), "num_cases_per_batch": PER_BATCH, "num_vis": 3072}
    (batches / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    return TinyCifar(
        archive=archive,
        train_images=images[: 5 * PER_BATCH],
        train_labels=labels[: 5 * PER_BATCH],
        test_images=images[5 * PER_BATCH :],
        test_labels=labels[5 * PER_BATCH :],
        file_md5={path.name: md5_of(path) for path in batches.iterdir()} | {archive.name: md5_of(archive)},
    )


class CountingHandler(SimpleHTTPRequestHandler):
    requests: list[str] = []  # noqa: RUF012 (shared on purpose: the test reads it)

    def do_GET(self) -> None:
        CountingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory: pytest.TempPathFactory) -> TinyCifar:
    return write_tiny_cifar10(tmp_path_factory.mktemp("tiny_cifar10_source"))


@pytest.fixture
def archive_server(tiny_cifar: TinyCifar) -> Iterator[str]:
    """Serve the tiny archive's folder on a free 127.0.0.1 port; yields the base URL."""
    CountingHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(CountingHandler, directory=str(tiny_cifar.archive.parent)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def point_cifar10_at(
    monkeypatch: pytest.MonkeyPatch, url: str, tiny: TinyCifar, archive_md5: str | None = None
) -> None:
    md5 = tiny.file_md5
    monkeypatch.setattr(CIFAR10, "url", url)
    monkeypatch.setattr(CIFAR10, "tgz_md5", archive_md5 or md5[tiny.archive.name])
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{n}", md5[f"data_batch_{n}"]] for n in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]})


@pytest.fixture
def served_cifar10(monkeypatch: pytest.MonkeyPatch, archive_server: str, tiny_cifar: TinyCifar) -> TinyCifar:
    point_cifar10_at(monkeypatch, f"{archive_server}/{tiny_cifar.archive.name}", tiny_cifar)
    return tiny_cifar


def test_downloads_verifies_extracts_and_splits(served_cifar10: TinyCifar, tmp_path: Path) -> None:
    root = tmp_path / "data root"
    splits = load_splits("cifar10", data_root=root, val_fraction=0.2, seed=0, show_progress=False)
    assert CountingHandler.requests, "the archive was not downloaded"
    assert (root / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert splits.class_names == CIFAR10_CLASS_NAMES
    assert splits.train_images.shape == (80, 32, 32, 3) and splits.train_images.dtype == np.uint8
    assert np.bincount(splits.val_labels).tolist() == [2] * 10
    for images, labels in ((splits.train_images, splits.train_labels), (splits.val_images, splits.val_labels)):
        ids = images[:, 0, 0, 0].astype(int)
        assert np.array_equal(images, served_cifar10.train_images[ids])  # NHWC, channels in RGB order
        assert np.array_equal(labels, served_cifar10.train_labels[ids])
    assert len(set(splits.train_images[:, 0, 0, 0]) | set(splits.val_images[:, 0, 0, 0])) == 80 + 20
    description = splits.description
    assert description["source"] == "cifar10" and description["root"] == str(root)
    assert description["spec"]["data_root"] == str(root)
    assert description["counts"] == {"train": 80, "val": 20}

    # Present and verified: the second load downloads nothing and gives the same split.
    requests = len(CountingHandler.requests)
    again = load_splits(**description["spec"], show_progress=False)
    assert len(CountingHandler.requests) == requests
    assert np.array_equal(again.val_images, splits.val_images)

    test_images, test_labels = load_cifar10_test(root)
    assert np.array_equal(test_images, served_cifar10.test_images)
    assert np.array_equal(test_labels, served_cifar10.test_labels) and test_labels.dtype == np.int64


def test_other_contract_sizes_use_the_runtime_resize(served_cifar10: TinyCifar, tmp_path: Path) -> None:
    splits = load_splits("cifar10", data_root=tmp_path, val_fraction=0.0, image_size=(20, 24), show_progress=False)
    contract = Contract(image_size=(20, 24))
    assert splits.train_images.shape == (100, 20, 24, 3)
    for row, original in zip(splits.train_images[:5], served_cifar10.train_images[:5], strict=True):
        assert np.array_equal(row, resize_to_contract(Image.fromarray(original), contract))


def test_limit_per_class_and_default_root_from_environment(
    served_cifar10: TinyCifar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIFAR_EDGE_DATA", str(tmp_path / "env root"))
    splits = load_splits(limit_per_class=3, val_fraction=0.0, show_progress=False)
    assert splits.description["root"] == str(tmp_path / "env root")
    assert np.bincount(splits.train_labels).tolist() == [3] * 10
    # The first three of each class, in file order: ids 0..29.
    assert sorted(splits.train_images[:, 0, 0, 0].tolist()) == list(range(30))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_explains_the_fix(error: pytest.ExceptionInfo[DataError], root: Path, url: str) -> str:
    text = str(error.value)
    assert "\n" not in text
    assert str(root) in text and url in text
    assert "--data-root DIR" in text and "cifar-10-batches-py" in text and "--data PATH" in text
    # Raised "from None": a CLI printing it shows no chained traceback.
    assert error.value.__cause__ is None and error.value.__suppress_context__
    return text


def test_offline_failure_is_one_clear_line(
    tiny_cifar: TinyCifar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/cifar-10-python.tar.gz"
    point_cifar10_at(monkeypatch, url, tiny_cifar)
    with pytest.raises(DataError) as error:
        load_splits("cifar10", data_root=tmp_path / "root", show_progress=False)
    text = assert_explains_the_fix(error, tmp_path / "root", url)
    assert "network error" in text and "refused" in text.lower()


def test_missing_file_on_server_is_reported(
    served_cifar10: TinyCifar, archive_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{archive_server}/no-such-archive.tar.gz"
    monkeypatch.setattr(CIFAR10, "url", url)
    with pytest.raises(DataError) as error:
        load_cifar10_test(tmp_path)
    assert "HTTP 404" in assert_explains_the_fix(error, tmp_path, url)


def test_archive_failing_its_md5_is_refused(
    tiny_cifar: TinyCifar, archive_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{archive_server}/{tiny_cifar.archive.name}"
    point_cifar10_at(monkeypatch, url, tiny_cifar, archive_md5="0" * 32)
    with pytest.raises(DataError) as error:
        load_splits("cifar10", data_root=tmp_path, show_progress=False)
    assert "MD5" in assert_explains_the_fix(error, tmp_path, url)
    assert not (tmp_path / "cifar-10-batches-py").exists()  # nothing unverified was extracted, let alone unpickled

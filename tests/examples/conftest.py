"""Fixtures for the JS client tests: node and the npm packages (npm ci, once, cached), a tiny real run exported by
the real cifar-export (pixel form fp32 and int8, and the float form), the images and the references.

These tests skip, saying why, only where node, npm's packages or Chromium cannot be had (or the shared data for
the real images); with CI=true they fail instead. ``examples/setup.sh`` installs everything they need.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from js_client_helpers import (
    MODEL_ENV,
    PIXEL_MODELS,
    NaturalSizeReference,
    References,
    require,
    write_bad_images,
    write_sample_images,
)
from js_clients import NODE_EXAMPLE, model_class_names, run_cifar_infer

STAMP = NODE_EXAMPLE / "node_modules" / ".cifar-edge-lock-sha256"
EXPORTS = {  # cifar-export's options for each file the tests use; the defaults give the pixel form
    "fp32": [],
    "int8": ["--quantize", "int8"],
    "float": ["--input", "float", "--no-verify"],
}


@contextlib.contextmanager
def _exclusive(name: str) -> Iterator[None]:
    """One npm ci at a time, across pytest processes sharing this checkout."""
    digest = hashlib.sha256(str(NODE_EXAMPLE).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"cifar-edge-{name}-{digest}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def node_bin() -> str:
    node = shutil.which("node")
    require(node is not None, "node is not installed (examples/setup.sh lists what the JS client tests need)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    major = int(version.lstrip("v").split(".")[0]) if version.startswith("v") else 0
    require(major >= 20, f"node >= 20 is needed for the JS client tests, found {version or 'an unknown version'}")
    return str(node)


@pytest.fixture(scope="session")
def node_modules(node_bin: str) -> Path:
    """examples/node/node_modules as pinned by package-lock.json; `npm ci` runs only when the lock file changed."""
    lock_digest = hashlib.sha256((NODE_EXAMPLE / "package-lock.json").read_bytes()).hexdigest()
    with _exclusive("npm-ci"):
        if not (STAMP.is_file() and STAMP.read_text().strip() == lock_digest):
            npm = shutil.which("npm")
            require(npm is not None, "npm is not installed: cannot install examples/node's packages")
            # --ignore-scripts: no package may run code (or download anything) at install time.
            command = [str(npm), "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
            result = subprocess.run(command, cwd=NODE_EXAMPLE, capture_output=True, text=True, timeout=600, check=False)
            last_line = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            require(result.returncode == 0, f"npm ci in examples/node failed (offline?): {last_line}")
            STAMP.write_text(lock_digest + "\n")
    return NODE_EXAMPLE / "node_modules"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_dataset_dir: Path) -> Path:
    """A real run folder: fit() with the default recipe, a tiny AirNet, one epoch on the tiny ImageFolder."""
    from cifar_edge.train.config import TrainConfig
    from cifar_edge.train.fit import fit

    work = tmp_path_factory.mktemp("examples_run")
    config = TrainConfig(
        epochs=1,
        batch_size=16,
        model_kwargs={"widths": [8, 16, 16]},
        data=str(tiny_dataset_dir),
        cache_dir=str(work / "cache"),
        run_dir=str(work / "run"),
        quiet=True,
        threads=1,
    )
    return fit(config).run_dir


@pytest.fixture(scope="session")
def models(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"fp32", "int8", "float"}: the tiny run exported by the cifar-export command; $CIFAR_EDGE_EXAMPLES_MODEL,
    when set, stands in for the fp32 file."""
    folder = tmp_path_factory.mktemp("examples_models")
    exporter = Path(sys.executable).parent / "cifar-export"
    paths = {}
    for kind, options in EXPORTS.items():
        paths[kind] = folder / f"model.{kind}.onnx"
        command = [str(exporter), str(tiny_run), "--output", str(paths[kind]), "--quiet", *options]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0 and paths[kind].is_file(), f"cifar-export {kind}: {done.stderr[-2000:]}"
    if os.environ.get(MODEL_ENV):
        paths["fp32"] = Path(os.environ[MODEL_ENV]).resolve()
        assert paths["fp32"].is_file(), f"{MODEL_ENV}={paths['fp32']} is not a file"
    return paths


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_sample_images(tmp_path_factory.mktemp("js_images"))


@pytest.fixture(scope="session")
def bad_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_bad_images(tmp_path_factory.mktemp("js_bad_images"))


@pytest.fixture(scope="session")
def references(models: dict[str, Path], sample_images: dict[str, Path]) -> dict[str, References]:
    """{model kind: cifar-infer's answers and the natural-size answers on every sample image}."""
    paths = list(sample_images.values())
    return {
        kind: References(
            cifar_infer=run_cifar_infer(models[kind], paths, model_class_names(models[kind])),
            natural=NaturalSizeReference(models[kind]).answers(paths),
        )
        for kind in PIXEL_MODELS
    }

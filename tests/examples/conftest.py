"""Fixtures for the JS client tests: node and the npm packages (npm ci, once, cached), the model, the images.

These tests skip, saying why, only where node, npm's packages or Chromium cannot be had; with CI=true they fail
instead. ``examples/setup.sh`` installs everything they need.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from js_client_helpers import (
    MODEL_ENV,
    NODE_EXAMPLE,
    PythonReference,
    build_pixel_model,
    require,
    write_bad_images,
    write_sample_images,
)

STAMP = NODE_EXAMPLE / "node_modules" / ".cifar-edge-lock-sha256"


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
def pixel_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model both clients run: $CIFAR_EDGE_EXAMPLES_MODEL when set, else the stand-in pixel-form model."""
    if os.environ.get(MODEL_ENV):
        path = Path(os.environ[MODEL_ENV]).resolve()
        assert path.is_file(), f"{MODEL_ENV}={path} is not a file"
        return path
    return build_pixel_model(tmp_path_factory.mktemp("js_model") / "model.onnx")


@pytest.fixture(scope="session")
def python_reference(pixel_model: Path) -> PythonReference:
    return PythonReference(pixel_model)


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_sample_images(tmp_path_factory.mktemp("js_images"))


@pytest.fixture(scope="session")
def bad_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_bad_images(tmp_path_factory.mktemp("js_bad_images"))

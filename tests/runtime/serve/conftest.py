"""A cifar-serve process per form model, shared by the tests of a module (the models: tests/runtime/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import Server, running


@pytest.fixture(scope="module")
def pixel_server(form_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serve") / "pixels.log"
    args = ["--max-body-mib", "1", "--max-queue-delay-ms", "5", "--log-level", "debug"]
    with running(form_models["pixels"], log, *args) as server:
        yield server


@pytest.fixture(scope="module")
def float_server(form_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serve") / "float.log"
    with running(form_models["float"], log, "--model-name", "cifar") as server:
        yield server

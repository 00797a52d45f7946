"""Fuzzing image lists (arguments and stdin lines): every input becomes a path or a Failure, nothing raises, and a
tree with symlink loops is still read once per real file."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cifar_edge.runtime.image_files import expand_inputs
from cifar_edge.runtime.predictions import Failure

NAMES = ["a", "a/one.png", "a/loop", "a/loop/one.png", "b", "b/*.png", "**/*.png", "*/", "[", "-", " a", "a ", "."]


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for relative in ("a/one.png", "a/sub/two.png", "b/three.jpg", "a /spaced.png"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (2, 2)).save(tmp_path / relative, format="PNG")
    os.symlink("..", tmp_path / "a" / "loop")  # a/loop -> . : a loop for folders and ** alike
    os.symlink("../a", tmp_path / "b" / "to_a")
    return tmp_path


pieces = st.sampled_from(NAMES) | st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]) | st.sampled_from("\0\r\n*?[]/. \t\udcff"), max_size=12
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arguments=st.lists(pieces, max_size=4), lines=st.lists(pieces, max_size=5), crlf=st.booleans())
def test_any_input_list_expands_to_paths_and_failures(tree: Path, arguments: list[str], lines: list[str], crlf: bool):
    ending = "\r\n" if crlf else "\n"
    stdin = io.BytesIO(ending.join(lines).encode("utf-8", "surrogateescape"))
    warnings: list[str] = []
    results = list(expand_inputs([*arguments, "-"], stdin, warn=warnings.append))
    real_files = [os.path.realpath(item) for item in results if isinstance(item, str)]
    assert len(real_files) == len(set(real_files))  # each real file once, loops or not
    assert all(isinstance(item, (str, Failure)) for item in results)
    assert all("\n" not in str(item) for item in results if isinstance(item, Failure))
    assert all("\n" not in line for line in warnings)

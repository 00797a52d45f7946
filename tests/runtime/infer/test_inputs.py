"""Input expansion: files, recursive folders, globs, stdin, de-duplication and inputs that match nothing."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from cifar_edge.runtime.image_files import expand_inputs, image_extensions
from cifar_edge.runtime.predictions import Failure


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for relative in ["a/one.png", "a/b/two.JPG", "a/b/c/three.webp", "a/.hidden/four.png", "a/.dot.png", "top.gif"]:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(path, format="PNG")  # the content format does not matter here
    (tmp_path / "a" / "b" / "notes.txt").write_text("not an image")
    (tmp_path / "empty_folder").mkdir()
    return tmp_path


def paths(results: list[str | Failure]) -> list[str]:
    return [r for r in results if isinstance(r, str)]


def test_folders_recurse_sorted_skipping_hidden_and_non_images(tree: Path) -> None:
    # A folder's own files (sorted) come before its subfolders (sorted), as os.walk visits them.
    assert paths(list(expand_inputs(["a"]))) == [
        os.path.join("a", "one.png"),
        os.path.join("a", "b", "two.JPG"),
        os.path.join("a", "b", "c", "three.webp"),
    ]
    assert {".png", ".jpg", ".jpeg", ".webp", ".gif", ".tif", ".bmp"} <= image_extensions()


def test_explicit_files_are_used_whatever_their_extension(tree: Path) -> None:
    assert list(expand_inputs(["a/b/notes.txt", "top.gif"])) == ["a/b/notes.txt", "top.gif"]


def test_globs_including_recursive_ones(tree: Path) -> None:
    assert list(expand_inputs(["a/b/*.JPG"])) == ["a/b/two.JPG"]
    assert list(expand_inputs(["**/*.webp"])) == [os.path.join("a", "b", "c", "three.webp")]
    (failure,) = expand_inputs(["*.tiff"])
    assert failure == Failure("*.tiff", "pattern matched no files")


def test_stdin_lists_inputs_one_per_line(tree: Path) -> None:
    # Only the line terminator is removed: spaces belong to the name (a real file here ends in one).
    Image.new("RGB", (4, 4)).save(tree / " spaced name .png", format="PNG")
    stdin = io.StringIO("top.gif\r\n\n spaced name .png\n  a/one.png  \na/b")
    assert list(expand_inputs(["-"], stdin)) == [
        "top.gif",
        " spaced name .png",
        Failure("  a/one.png  ", "file not found"),
        os.path.join("a", "b", "two.JPG"),
        os.path.join("a", "b", "c", "three.webp"),
    ]
    # The bytes of sys.stdin.buffer are split on \n alone and decoded as file names are.
    binary = io.BytesIO(b"top.gif\r\n spaced name .png\n\n")
    assert list(expand_inputs(["-"], binary)) == ["top.gif", " spaced name .png"]


def test_same_file_twice_is_classified_once(tree: Path) -> None:
    results = list(expand_inputs(["a/one.png", "a", "./a/one.png"]))
    assert results.count("a/one.png") == 1 and len(paths(results)) == 3


def test_inputs_that_match_nothing_become_failures_in_place(tree: Path) -> None:
    results = list(expand_inputs(["missing.png", "top.gif", "empty_folder"]))
    assert results == [
        Failure("missing.png", "file not found"),
        "top.gif",
        Failure("empty_folder", "folder holds no image files"),
    ]


def test_symlinked_folders_are_followed_once_and_loops_refused(tree: Path) -> None:
    os.symlink("..", tree / "a" / "b" / "up")  # a/b/up -> a: a loop
    os.symlink("a", tree / "again")  # a second path to a/
    warnings: list[str] = []
    results = list(expand_inputs(["a", "again", "**/*.webp"], warn=warnings.append))
    assert paths(results) == [
        os.path.join("a", "one.png"),
        os.path.join("a", "b", "two.JPG"),
        os.path.join("a", "b", "c", "three.webp"),
    ]  # "again" and the glob reach the same real files: each is classified once
    assert set(warnings) == {
        f"skipped {os.path.join('a', 'b', 'up')}: a symlink loop (it leads back to {tree / 'a'})",
        f"skipped {os.path.join('again', 'b', 'up')}: a symlink loop (it leads back to {tree / 'a'})",
        "skipped again: the same folder as a, already read (each real folder is read once)",  # the ** walk
    }

"""The distribution ships every module: each source folder is a listed package, and the wheel holds every .py file."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]  # {"cifar_edge.runtime": "runtime", ...}
SOURCE_FOLDERS = ("train", "export", "runtime")


def _source_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*.py") if "__pycache__" not in path.parts)


def _packages_on_disk() -> dict[str, Path]:
    """``cifar_edge.<folder>[.<sub>...]`` for every folder under train/, export/, runtime/ holding .py files."""
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        root = REPO_ROOT / folder
        for source in _source_files(root):
            parts = source.parent.relative_to(root).parts
            found[".".join((package, *parts))] = source.parent
    return found


def test_package_dirs_map_the_three_source_folders() -> None:
    assert sorted(PACKAGE_DIRS.values()) == sorted(SOURCE_FOLDERS)
    assert {f"cifar_edge.{folder}": folder for folder in SOURCE_FOLDERS} == PACKAGE_DIRS


def test_every_source_folder_is_a_documented_listed_package() -> None:
    on_disk = _packages_on_disk()
    assert len(on_disk) > len(SOURCE_FOLDERS)  # the sub-packages were found, not only the top-level folders
    problems = []
    for package, folder in sorted(on_disk.items()):
        init = folder / "__init__.py"
        if not init.is_file():
            problems.append(f"{package}: no {init.relative_to(REPO_ROOT)}")
            continue
        docstring = ast.get_docstring(ast.parse(init.read_text(), filename=str(init)), clean=True)
        lines = (docstring or "").splitlines()
        # A one-line summary (PEP 257): a first line that is a whole sentence, then nothing or a blank line.
        if not lines or not lines[0].strip().endswith(".") or (len(lines) > 1 and lines[1].strip()):
            problems.append(f"{package}: {init.relative_to(REPO_ROOT)} lacks a one-line summary docstring")
    assert problems == []
    listed = PYPROJECT["tool"]["setuptools"]["packages"]
    assert len(listed) == len(set(listed)), "a package is listed twice in [tool.setuptools] packages"
    assert set(listed) == set(on_disk)


def test_the_wheel_holds_exactly_the_source_modules(tmp_path: Path) -> None:
    setuptools_spec = importlib.util.find_spec("setuptools")
    if setuptools_spec is None:
        pytest.skip(f"setuptools is not installed in {sys.prefix}: --no-build-isolation cannot build the wheel")
    # Build from a clean copy: an in-tree build would reuse (and ship) a stale build/lib left by an earlier build,
    # and would write build/ and *.egg-info into the working tree.
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy2(REPO_ROOT / "pyproject.toml", source)
    for extra in ("README.md", "LICENSE", "LICENSE.txt"):
        if (REPO_ROOT / extra).is_file():
            shutil.copy2(REPO_ROOT / extra, source)
    for folder in SOURCE_FOLDERS:
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path / "wheels"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = sorted(out.glob("cifar_edge-*.whl"))
    assert len(wheels) == 1, sorted(path.name for path in out.iterdir())
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
    in_wheel = {name for name in names if name.startswith("cifar_edge/") and name.endswith(".py")}
    in_tree = {
        f"cifar_edge/{folder}/{path.relative_to(REPO_ROOT / folder).as_posix()}"
        for folder in SOURCE_FOLDERS
        for path in _source_files(REPO_ROOT / folder)
    }
    assert len(in_tree) > 50
    assert sorted(in_wheel - in_tree) == [], "the wheel ships modules that are not in the tree"
    assert sorted(in_tree - in_wheel) == [], "modules in the tree are missing from the wheel"
    assert "cifar_edge/__init__.py" not in names  # cifar_edge stays an implicit namespace package

"""docs/portable.md's snippets, run as written on the tiny run's pixel-form export: plain Python (no cifar-edge
import), Node and a browser page each give cifar-infer's label, and the probability of the same file run at its
natural size. The docs can then not rot."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from js_client_helpers import PNG_TOLERANCE, References, require
from js_clients import EXAMPLES, BrowserPage, ClientUnavailable

DOC = EXAMPLES.parent / "docs" / "portable.md"
# The EXIF-rotated photo (when the shared data has it) first; the last two have transparency.
IMAGES = ("photo_cat_exif.jpg", "exif_rotated.jpg", "palette.png", "alpha.png")
TRANSLUCENT = ("palette.png", "alpha.png")


def snippet(language: str) -> str:
    """The one fenced ``language`` block of docs/portable.md."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text(encoding="utf-8"), flags=re.M | re.S)
    assert len(blocks) == 1, f"docs/portable.md should hold one {language} block, found {len(blocks)}"
    return blocks[0]


def _images(sample_images: dict[str, Path]) -> list[Path]:
    return [sample_images[name] for name in IMAGES if name in sample_images]


def _check(output: str, image: Path, references: References) -> None:
    """The snippet printed ``label probability``: cifar-infer's label, the natural-size run's probability."""
    label, probability = output.split()
    assert label == references.cifar_infer[str(image)]["label"], (image.name, output)
    expected = max(references.natural[str(image)]["probabilities"])
    assert float(probability) == pytest.approx(expected, abs=PNG_TOLERANCE), image.name


def test_the_python_snippet_imports_no_cifar_edge_and_gives_cifar_infers_answer(
    models: dict[str, Path], sample_images: dict[str, Path], references: dict[str, References], tmp_path: Path
) -> None:
    code = snippet("python")
    assert "cifar_edge." not in code.replace('"cifar_edge.contract"', "")
    check = "\nimport sys\nassert not [m for m in sys.modules if m.startswith('cifar_edge')], 'imported cifar_edge'\n"
    shutil.copyfile(models["fp32"], tmp_path / "model.onnx")
    for image in _images(sample_images):
        shutil.copyfile(image, tmp_path / "photo.jpg")  # Pillow reads the content, whatever the name says
        done = subprocess.run([sys.executable, "-c", code + check], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        _check(done.stdout, image, references["fp32"])


def test_the_node_snippet_gives_cifar_infers_answer(
    node_bin: str,
    node_modules: Path,
    models: dict[str, Path],
    sample_images: dict[str, Path],
    references: dict[str, References],
    tmp_path: Path,
) -> None:
    """Run as the docs say, saved in examples/node/: here a copy of that layout with links to the real folders."""
    (tmp_path / "common").symlink_to(EXAMPLES / "common")
    folder = tmp_path / "node"
    folder.mkdir()
    (folder / "node_modules").symlink_to(node_modules)
    (folder / "snippet.mjs").write_text(snippet("js"))
    shutil.copyfile(models["fp32"], folder / "model.onnx")
    # Opaque files only: libvips' flatten rounds translucent pixels its own way (within a level, as the docs say),
    # which can turn a near-tie of the tiny model's classes.
    for image in [image for image in _images(sample_images) if image.name not in TRANSLUCENT]:
        shutil.copyfile(image, folder / "photo.jpg")
        done = subprocess.run([node_bin, "snippet.mjs"], cwd=folder, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        _check(done.stdout, image, references["fp32"])


def test_the_browser_snippet_gives_cifar_infers_answer(
    node_modules: Path,
    models: dict[str, Path],
    sample_images: dict[str, Path],
    references: dict[str, References],
    tmp_path: Path,
) -> None:
    """A page beside examples/browser/ (served at /_files/), with the model and one photo next to it."""
    image = _images(sample_images)[0]
    shutil.copyfile(models["fp32"], tmp_path / "model.onnx")
    shutil.copyfile(image, tmp_path / "photo.jpg")
    (tmp_path / "snippet.html").write_text(snippet("html"))
    try:
        with BrowserPage(tmp_path, page_path="") as page:
            with page.page.expect_console_message(predicate=lambda message: message.type == "log") as message:
                page.page.goto(f"{page.base_url}_files/snippet.html")
            output = message.value.text
            errors = [error for error in page.errors if "404" not in error]  # the page asks for a favicon
    except ClientUnavailable as missing:
        require(False, str(missing))
    assert not errors, errors
    _check(output, image, references["fp32"])

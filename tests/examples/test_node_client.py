"""examples/node: onnxruntime-web (wasm) + sharp in Node give the Python runtime's answers for the same files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from js_client_helpers import EXAMPLES, NODE_EXAMPLE, PythonReference, build_pixel_model, check_agreement
from PIL import Image

CLI = NODE_EXAMPLE / "classify.mjs"
SAMPLE_NAMES = ("alpha.png", "grey_alpha.png", "palette.png", "exif_rotated.png", "exif_rotated.jpg", "cmyk.jpg")
SHARED_NAMES = ("cifar_cat.jpg", "photo_cat.png")


def _run_cli(node_bin: str, *args: Path | str) -> subprocess.CompletedProcess[str]:
    command = [node_bin, str(CLI), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def node_run(
    node_bin: str, node_modules: Path, pixel_model: Path, sample_images: dict[str, Path], bad_images: dict[str, Path]
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict]]:
    """One CLI run over every sample image with the bad files in the middle: (process, {file name: JSON line})."""
    paths = list(sample_images.values())
    paths[2:2] = bad_images.values()
    result = _run_cli(node_bin, pixel_model, *paths)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(paths), result.stdout + result.stderr
    return result, {Path(line["path"]).name: line for line in lines}


@pytest.mark.parametrize("name", (*SAMPLE_NAMES, "grey16.png", *SHARED_NAMES))
def test_node_gives_the_python_runtimes_answer(
    name: str,
    node_run: tuple[subprocess.CompletedProcess[str], dict[str, dict]],
    sample_images: dict[str, Path],
    python_reference: PythonReference,
    record_property: Any,
) -> None:
    if name not in sample_images:
        pytest.skip(f"shared data missing: {name} (../shared/data)")
    expected = python_reference.probabilities(sample_images[name])
    difference = check_agreement(name, node_run[1][name], expected, python_reference.class_names)
    record_property("max_probability_difference", difference)


def test_node_reports_a_bad_file_on_one_line_and_carries_on(
    node_run: tuple[subprocess.CompletedProcess[str], dict[str, dict]], bad_images: dict[str, Path]
) -> None:
    result, lines = node_run
    assert result.returncode == 1, result.stderr  # as cifar-infer: some inputs failed
    for name, path in bad_images.items():
        assert set(lines[name]) == {"path", "error"}
        assert lines[name]["error"].startswith(f"{path}: ")
        assert "\n" not in lines[name]["error"]
    assert sum("label" in line for line in lines.values()) == len(lines) - len(bad_images)


def test_node_refuses_a_float_form_model_in_one_line(node_bin: str, node_modules: Path, tmp_path: Path) -> None:
    model = build_pixel_model(tmp_path / "float.onnx", input_form="float")
    image = tmp_path / "grey.png"
    Image.new("L", (8, 8), 128).save(image)
    result = _run_cli(node_bin, model, image)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and 'input_form "float"' in result.stderr


def test_shared_alpha_compositing_rounds_like_pillow(node_bin: str) -> None:
    """examples/common/classify.mjs against Image.alpha_composite for every value, alpha and some backgrounds."""
    script = (
        "import { compositeOnBackground } from './common/classify.mjs';\n"
        "const rgba = new Uint8Array(256 * 256 * 4);\n"
        "for (let v = 0; v < 256; v++) for (let a = 0; a < 256; a++) rgba.set([v, 255 - v, v, a], (v * 256 + a) * 4);\n"
        "for (const bg of [[255, 255, 255], [0, 0, 0], [17, 128, 254]])\n"
        "  process.stdout.write(Buffer.from(compositeOnBackground(rgba, 256, 256, bg)));\n"
    )
    result = subprocess.run(
        [node_bin, "--input-type=module", "-e", script], cwd=EXAMPLES, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    got = np.frombuffer(result.stdout, np.uint8).reshape(3, 256, 256, 3)
    values, alphas = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgba = np.stack([values, 255 - values, values, alphas], axis=-1).astype(np.uint8)
    source = Image.fromarray(rgba, "RGBA")
    for index, background in enumerate([(255, 255, 255), (0, 0, 0), (17, 128, 254)]):
        canvas = Image.new("RGBA", (256, 256), (*background, 255))
        expected = np.asarray(Image.alpha_composite(canvas, source).convert("RGB"))
        assert np.array_equal(got[index], expected), f"background {background}"

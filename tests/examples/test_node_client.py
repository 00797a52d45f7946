"""examples/node: onnxruntime-web (wasm) + sharp in Node give cifar-infer's answers on the same files, with a real
exported run (pixel form, fp32 and int8)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from js_client_helpers import PIXEL_MODELS, References, check_client, require
from js_clients import EXAMPLES, NODE_CLI, NodeRun, compare, run_node
from PIL import Image
from tiny_data import SHARED_CAT_PHOTO, SHARED_CIFAR_TRAIN


@pytest.fixture(scope="module")
def node_runs(
    node_bin: str,
    node_modules: Path,
    models: dict[str, Path],
    sample_images: dict[str, Path],
    bad_images: dict[str, Path],
) -> dict[str, NodeRun]:
    """{model kind: one CLI run over every sample image, with the bad files in the middle}."""
    paths = list(sample_images.values())
    paths[2:2] = bad_images.values()
    return {kind: run_node(models[kind], paths, node=node_bin) for kind in PIXEL_MODELS}


@pytest.mark.parametrize("kind", PIXEL_MODELS)
def test_node_gives_cifar_infers_answers(
    kind: str,
    node_runs: dict[str, NodeRun],
    sample_images: dict[str, Path],
    references: dict[str, References],
    record_property: Any,
) -> None:
    keys = [str(path) for path in sample_images.values()]
    problems = check_client(node_runs[kind].answers, references[kind], keys)
    assert not problems, "\n".join(problems)
    agreement = compare(references[kind].cifar_infer, node_runs[kind].answers, keys)
    assert agreement.top1_percent == 100.0
    record_property("agreement", agreement.to_dict())


def test_the_images_include_real_cifar_jpegs_and_the_photo(sample_images: dict[str, Path]) -> None:
    shared = SHARED_CIFAR_TRAIN.is_dir() and SHARED_CAT_PHOTO.is_file()
    require(shared, f"shared data missing ({SHARED_CIFAR_TRAIN.parent}, {SHARED_CAT_PHOTO}): synthetic images only")
    assert len(sample_images) >= 40
    assert sum(name.startswith("cifar_") and name.endswith(".jpg") for name in sample_images) >= 20


def test_node_reports_a_bad_file_on_one_line_and_carries_on(
    node_runs: dict[str, NodeRun], sample_images: dict[str, Path], bad_images: dict[str, Path]
) -> None:
    run = node_runs["fp32"]
    assert run.returncode == 1, run.stderr  # as cifar-infer: some inputs failed
    for path in bad_images.values():
        answer = run.answers[str(path)]
        assert set(answer) == {"error"}
        assert answer["error"].startswith(f"{path}: ")
        assert "\n" not in answer["error"]
    assert sum("label" in answer for answer in run.answers.values()) == len(sample_images)


def test_node_refuses_a_float_form_export_in_one_line(
    node_bin: str, node_modules: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    image = tmp_path / "grey.png"
    Image.new("L", (8, 8), 128).save(image)
    result = subprocess.run(
        [node_bin, str(NODE_CLI), str(models["float"]), str(image)], capture_output=True, text=True, timeout=120
    )
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

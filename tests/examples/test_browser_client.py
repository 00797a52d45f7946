"""examples/browser: the static page in real headless Chromium gives cifar-infer's answers on the same files, with a
real exported run (pixel form, fp32 and int8).

Chromium is Debian's (/usr/bin/chromium), driven by Python playwright; no browser is ever downloaded. The page is
served from examples/ by a local http.server, as a user would serve it (examples/js_clients.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from js_client_helpers import PIXEL_MODELS, References, check_client, require
from js_clients import BrowserPage, ClientUnavailable, compare

SCREENSHOT_ENV = "CIFAR_EDGE_BROWSER_SCREENSHOT"  # also copy the screenshot here (e.g. docs/img/browser.png)
# Not grey16.png: Chromium turns 16-bit samples into 8 bits its own way (within 1 level of the runtime's rounding).
NOT_IN_BROWSER = ("grey16.png",)
SCREENSHOT_IMAGE = "photo_cat.png"  # what the screenshot shows
SERVED_AS = {"fp32": "model.onnx", "int8": "model.int8.onnx"}  # cifar-export's names


@pytest.fixture(scope="module")
def served_folder(
    tmp_path_factory: pytest.TempPathFactory,
    models: dict[str, Path],
    sample_images: dict[str, Path],
    bad_images: dict[str, Path],
) -> Path:
    """The models and images in one folder, which the page fetches from."""
    folder = tmp_path_factory.mktemp("served")
    for kind in PIXEL_MODELS:
        shutil.copyfile(models[kind], folder / SERVED_AS[kind])
    for name, path in {**sample_images, **bad_images}.items():
        shutil.copyfile(path, folder / name)
    return folder


@pytest.fixture(scope="module")
def page(node_modules: Path, served_folder: Path) -> Iterator[BrowserPage]:
    """The page in headless Chromium with the fp32 model loaded."""
    try:
        with BrowserPage(served_folder, SERVED_AS["fp32"]) as opened:
            assert "error" not in opened.loaded, (opened.loaded, opened.errors)
            yield opened
    except ClientUnavailable as missing:
        require(False, str(missing))


@pytest.fixture(scope="module")
def browser_answers(page: BrowserPage, served_folder: Path, sample_images: dict[str, Path]) -> dict[str, dict]:
    """{model kind: {sample image path string: the page's answer}}; the fp32 model is loaded again at the end."""
    names = [name for name in sample_images if name not in NOT_IN_BROWSER]
    answers: dict[str, dict] = {}
    for kind in (*PIXEL_MODELS[1:], PIXEL_MODELS[0]):
        assert "error" not in page.load_model(SERVED_AS[kind])
        served = page.classify([served_folder / name for name in names])
        answers[kind] = {str(sample_images[name]): served[str(served_folder / name)] for name in names}
    return answers


@pytest.mark.parametrize("kind", PIXEL_MODELS)
def test_browser_gives_cifar_infers_answers(
    kind: str,
    browser_answers: dict[str, dict],
    references: dict[str, References],
    record_property: Any,
) -> None:
    answers = browser_answers[kind]
    keys = list(answers)
    problems = check_client(answers, references[kind], keys)
    assert not problems, "\n".join(problems)
    assert {answer["decoder"] for answer in answers.values()} == {"webgl2"}, "2D canvas fallback: alpha loses levels"
    record_property("agreement", compare(references[kind].cifar_infer, answers, keys).to_dict())


def test_browser_reports_a_bad_file_in_one_line(page: BrowserPage, served_folder: Path) -> None:
    names = ("not_an_image.png", "truncated.png")
    answers = page.classify([served_folder / name for name in names])
    for name in names:
        answer = answers[str(served_folder / name)]
        assert set(answer) == {"error"}, answer
        assert answer["error"].startswith(f"{page.url(name)}: ") and "\n" not in answer["error"]
    assert page.errors == [], page.errors  # no uncaught exception nor console error along the way


def _wait_for_classified(page: Any, name: str) -> str:
    """The page's top label once its status line says ``name`` was classified."""
    page.wait_for_function(
        "name => { const text = document.getElementById('status').textContent;"
        " return text.startsWith(name + ': ') && text.includes('classified'); }",
        arg=name,
    )
    return str(page.locator("#bars li").first.inner_text().split()[0])


def test_choosing_or_dropping_an_image_classifies_it(
    page: BrowserPage, browser_answers: dict[str, dict], sample_images: dict[str, Path]
) -> None:
    fp32 = browser_answers[PIXEL_MODELS[0]]
    page.page.set_input_files("#image-file", str(sample_images["alpha.png"]))
    assert _wait_for_classified(page.page, "alpha.png") == fp32[str(sample_images["alpha.png"])]["label"]
    page.page.evaluate(
        """async (url) => {
          const blob = await (await fetch(url)).blob();
          const transfer = new DataTransfer();
          transfer.items.add(new File([blob], "dropped.png", { type: "image/png" }));
          const drop = new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true });
          document.getElementById("drop").dispatchEvent(drop);
        }""",
        page.url("palette.png"),
    )
    assert _wait_for_classified(page.page, "dropped.png") == fp32[str(sample_images["palette.png"])]["label"]


def test_browser_page_shows_the_top_classes(
    page: BrowserPage, served_folder: Path, sample_images: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    name = SCREENSHOT_IMAGE if SCREENSHOT_IMAGE in sample_images else "alpha.png"
    answer = page.classify([served_folder / name])[str(served_folder / name)]
    bars = page.page.locator("#bars li")
    assert bars.count() == len(answer["top"])
    assert [bar.split()[0] for bar in bars.all_inner_texts()] == [label for label, _ in answer["top"]]
    screenshot = tmp_path_factory.mktemp("artifacts") / "browser.png"
    page.page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 1000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(screenshot, os.environ[SCREENSHOT_ENV])

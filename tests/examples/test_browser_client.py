"""examples/browser: the static page in real headless Chromium gives the Python runtime's answers for the same files.

Chromium is Debian's (/usr/bin/chromium), driven by Python playwright; no browser is ever downloaded. The page is
served from examples/ by a local http.server, as a user would serve it.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from js_client_helpers import EXAMPLES, PythonReference, check_agreement, require

CHROMIUM = Path(os.environ.get("CIFAR_EDGE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOT_ENV = "CIFAR_EDGE_BROWSER_SCREENSHOT"  # also copy the screenshot here (e.g. docs/img/browser.png)
# Not grey16.png: Chromium turns 16-bit samples into 8 bits its own way (within 1 level of the runtime's rounding).
SAMPLE_NAMES = ("alpha.png", "grey_alpha.png", "palette.png", "exif_rotated.png", "exif_rotated.jpg", "cmyk.jpg")
SHARED_NAMES = ("cifar_cat.jpg", "photo_cat.png")
SCREENSHOT_IMAGE = "photo_cat.png"  # what the screenshot shows
TEST_PREFIX = "/_test/"  # URL folder of the model and images written by the tests


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves examples/ at /, and the tests' folder at /_test/; quiet; explicit types for modules and wasm."""

    test_folder: Path
    extensions_map = {  # noqa: RUF012 (the base class's attribute)
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
    }

    def translate_path(self, path: str) -> str:
        url_path = unquote(urlsplit(path).path)
        if url_path.startswith(TEST_PREFIX):
            relative = Path(url_path[len(TEST_PREFIX) :])
            if ".." not in relative.parts:
                return str(self.test_folder / relative)
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served_folder(
    tmp_path_factory: pytest.TempPathFactory,
    pixel_model: Path,
    sample_images: dict[str, Path],
    bad_images: dict[str, Path],
) -> Path:
    folder = tmp_path_factory.mktemp("served")
    shutil.copyfile(pixel_model, folder / "model.onnx")
    for name, path in {**sample_images, **bad_images}.items():
        shutil.copyfile(path, folder / name)
    return folder


@pytest.fixture(scope="module")
def server_url(node_modules: Path, served_folder: Path) -> Iterator[str]:
    """http://127.0.0.1:PORT/ serving examples/ (the page, the shared module, node_modules' onnxruntime-web)."""
    handler = type("Handler", (_Handler,), {"test_folder": served_folder})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(EXAMPLES)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def page(server_url: str) -> Iterator[Any]:
    """The page in headless Chromium with the model loaded; console errors collected on page.errors."""
    require(CHROMIUM.is_file(), f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "Python playwright is not installed (pip install playwright; it needs no browser download)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 820, "height": 470})
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.goto(f"{server_url}browser/index.html?model={TEST_PREFIX}model.onnx")
            loaded = page.evaluate("() => window.cifarEdgeReady")
            assert "error" not in loaded, (loaded, errors)
            page.errors = errors
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser_results(page: Any, sample_images: dict[str, Path], bad_images: dict[str, Path]) -> dict[str, dict]:
    """{file name: window.classifyUrl's answer} for every image, bad ones included."""
    names = [*bad_images, *sample_images]
    return {name: page.evaluate("url => window.classifyUrl(url)", f"{TEST_PREFIX}{name}") for name in names}


def _wait_for_classified(page: Any, name: str) -> str:
    """The page's top label once its status line says ``name`` was classified."""
    page.wait_for_function(
        "name => { const text = document.getElementById('status').textContent;"
        " return text.startsWith(name + ': ') && text.includes('classified'); }",
        arg=name,
    )
    return str(page.locator("#bars li").first.inner_text().split()[0])


@pytest.mark.parametrize("name", SAMPLE_NAMES + SHARED_NAMES)
def test_browser_gives_the_python_runtimes_answer(
    name: str,
    browser_results: dict[str, dict],
    sample_images: dict[str, Path],
    python_reference: PythonReference,
    record_property: Any,
) -> None:
    if name not in sample_images:
        pytest.skip(f"shared data missing: {name} (../shared/data)")
    result = browser_results[name]
    expected = python_reference.probabilities(sample_images[name])
    difference = check_agreement(name, result, expected, python_reference.class_names)
    record_property("max_probability_difference", difference)
    assert result["decoder"] == "webgl2", "2D canvas fallback: translucent pixels lose precision"


def test_browser_reports_a_bad_file_in_one_line(browser_results: dict[str, dict], page: Any) -> None:
    for name in ("not_an_image.png", "truncated.png"):
        result = browser_results[name]
        assert set(result) == {"path", "error"}, result
        assert result["error"].startswith(f"{TEST_PREFIX}{name}: ") and "\n" not in result["error"]
    assert page.errors == [], page.errors  # no uncaught exception nor console error along the way


def test_choosing_or_dropping_an_image_classifies_it(
    page: Any, browser_results: dict[str, dict], sample_images: dict[str, Path]
) -> None:
    page.set_input_files("#image-file", str(sample_images["alpha.png"]))
    assert _wait_for_classified(page, "alpha.png") == browser_results["alpha.png"]["label"]
    page.evaluate(
        """async (url) => {
          const blob = await (await fetch(url)).blob();
          const transfer = new DataTransfer();
          transfer.items.add(new File([blob], "dropped.png", { type: "image/png" }));
          const drop = new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true });
          document.getElementById("drop").dispatchEvent(drop);
        }""",
        f"{TEST_PREFIX}palette.png",
    )
    assert _wait_for_classified(page, "dropped.png") == browser_results["palette.png"]["label"]


def test_browser_page_shows_the_top_classes(
    page: Any, sample_images: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    name = SCREENSHOT_IMAGE if SCREENSHOT_IMAGE in sample_images else "alpha.png"
    result = page.evaluate("url => window.classifyUrl(url)", f"{TEST_PREFIX}{name}")
    bars = page.locator("#bars li")
    assert bars.count() == len(result["top"])
    assert [bar.split()[0] for bar in bars.all_inner_texts()] == [label for label, _ in result["top"]]
    screenshot = tmp_path_factory.mktemp("artifacts") / "browser.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 1000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(screenshot, os.environ[SCREENSHOT_ENV])

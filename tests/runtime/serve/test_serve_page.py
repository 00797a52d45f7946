"""The page at ``/`` in a real headless Chromium (Debian's, driven by playwright; no browser is downloaded): an image
chosen shows its top classes with bars, a text file shows a one-line error. The screenshot is kept in tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from serve_helpers import Server

pytestmark = pytest.mark.timeout(120)
CHROMIUM = Path(os.environ.get("CIFAR_EDGE_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="module")
def browser_page() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def test_page_classifies_a_chosen_image_and_shows_a_bad_file_in_one_line(
    pixel_server: Server, browser_page: object, tmp_path: Path
) -> None:
    page: Any = browser_page
    cat = tmp_path / "cat.png"
    Image.new("RGB", (48, 40), (190, 140, 90)).save(cat)
    expected = httpx.post(pixel_server.url + "/v2/models/conv_pixels/classify", content=cat.read_bytes()).json()
    page.goto(pixel_server.url + "/")
    page.wait_for_function("document.getElementById('details').textContent.includes('airplane')")
    assert "uint8 pixels" in page.inner_text("#about")
    page.set_input_files("#files", str(cat))
    page.wait_for_selector(".result .bar")
    labels = page.locator(".result .label").all_inner_texts()
    assert labels[0] == expected["label"] and len(labels) == 3
    page.screenshot(path=str(tmp_path / "page.png"))
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    page.set_input_files("#files", str(notes))
    page.wait_for_function("document.getElementById('status').textContent.length > 0")
    status = page.inner_text("#status")
    assert status == "notes.txt: not an image (unrecognised or unsupported format)"
    page.screenshot(path=str(tmp_path / "page-error.png"))
    assert (tmp_path / "page.png").stat().st_size > 0

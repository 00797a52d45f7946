"""Drive the example clients from Python and compare their answers with cifar-infer's: the one place that
tests/examples and bench/portable.py share.

- ``run_node``: examples/node/classify.mjs over many files, one process, answers by path.
- ``BrowserPage``: examples/browser/ served on 127.0.0.1 (with a folder of models and images under
  ``SERVED_PREFIX``), open in headless Chromium through Python playwright, launched on the distribution's
  Chromium (never a browser download); ``classify`` runs the page's ``window.classifyUrl`` over many files.
- ``run_cifar_infer``: the reference, ``cifar-infer --json`` with every class's probability.
- ``compare``: how one client's answers agree with the reference (top-1, max |probability difference|).

Every answer is a dict: ``{"label", "probabilities": [float, ...] in the model's class order, ...}`` or
``{"error": "one line"}``. Only the standard library, numpy and (for the browser) playwright are imported here, so
this file works wherever the clients run, with or without cifar-edge installed.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

EXAMPLES = Path(__file__).resolve().parent
NODE_EXAMPLE = EXAMPLES / "node"
NODE_CLI = NODE_EXAMPLE / "classify.mjs"
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
SERVED_PREFIX = "/_files/"  # URL folder of the caller's models and images; examples/ itself is served at /
CONTRACT_KEY = "cifar_edge.contract"
LOSSLESS_SUFFIXES = (".png",)  # the same pixels in every decoder: probabilities must match to float rounding


class ClientUnavailable(RuntimeError):
    """node, npm's packages, Chromium or playwright cannot be had here; ``str()`` says which and how to get it."""


def model_class_names(model: Path) -> list[str]:
    """The class names in a cifar-edge model's contract (read through onnxruntime: no onnx import)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return list(json.loads(session.get_modelmeta().custom_metadata_map[CONTRACT_KEY])["class_names"])


# ---------------------------------------------------------------------------------------------------------------
# The reference: cifar-infer --json.


def cifar_infer_command() -> Path:
    """The cifar-infer beside this Python (the virtual environment's), else the one on PATH."""
    beside = Path(sys.executable).parent / "cifar-infer"
    found = beside if beside.is_file() else shutil.which("cifar-infer")
    if found is None:
        raise FileNotFoundError("cifar-infer is not installed (pip install -e '.[cpu]')")
    return Path(found)


def run_cifar_infer(model: Path, paths: list[Path], class_names: list[str], *, batch_size: int = 64) -> dict:
    """{path string: answer} from one ``cifar-infer --json --top-k <classes>`` process."""
    command = [str(cifar_infer_command()), "--model", str(model), "--provider", "cpu", "--json", "--quiet"]
    command += ["--top-k", str(len(class_names)), "--batch-size", str(batch_size), *map(str, paths)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"cifar-infer failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    answers = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        if "error" in record:
            answers[record["path"]] = {"error": record["error"]}
            continue
        by_label = {score["label"]: score["probability"] for score in record["top_k"]}
        answers[record["path"]] = {"label": record["label"], "probabilities": [by_label[n] for n in class_names]}
    return answers


# ---------------------------------------------------------------------------------------------------------------
# Node.


@dataclass
class NodeRun:
    returncode: int
    stderr: str
    answers: dict[str, dict]  # by the path string given


def node_command() -> str:
    """node (>= 20) with examples/node's packages installed; ClientUnavailable otherwise."""
    node = shutil.which("node")
    if node is None:
        raise ClientUnavailable("node is not installed (examples/setup.sh lists what the JS clients need)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    major = int(version.lstrip("v").split(".")[0]) if version.startswith("v") else 0
    if major < 20:
        raise ClientUnavailable(f"node >= 20 is needed for the JS clients, found {version or 'an unknown version'}")
    if not (NODE_EXAMPLE / "node_modules" / "onnxruntime-web").is_dir():
        raise ClientUnavailable("examples/node has no node_modules: run examples/setup.sh")
    return node


def run_node(model: Path, paths: list[Path], *, node: str | None = None, timeout: float = 1800) -> NodeRun:
    """examples/node/classify.mjs on ``paths`` in one process."""
    command = [node or node_command(), str(NODE_CLI), str(model), *map(str, paths)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    answers = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        answers[record.pop("path")] = record
    return NodeRun(done.returncode, done.stderr, answers)


# ---------------------------------------------------------------------------------------------------------------
# The browser.


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves examples/ at /, and the caller's folder at SERVED_PREFIX; quiet; explicit types for modules and wasm."""

    served_folder: Path
    extensions_map = {  # noqa: RUF012 (the base class's attribute)
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
    }

    def translate_path(self, path: str) -> str:
        url_path = unquote(urlsplit(path).path)
        if url_path.startswith(SERVED_PREFIX):
            relative = Path(url_path[len(SERVED_PREFIX) :])
            if ".." not in relative.parts:
                return str(self.served_folder / relative)
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


_CLASSIFY_ALL = """async urls => {
  const answers = [];
  for (const url of urls) answers.push(await window.classifyUrl(url));
  return answers;
}"""


@dataclass
class BrowserPage:
    """The example page in headless Chromium with ``folder/model_name`` loaded; use it as a context manager.

    ``folder`` is served at ``SERVED_PREFIX`` (images are named relative to it). ``page`` is playwright's page,
    ``errors`` collects uncaught exceptions and console errors, ``console`` every console line.
    """

    folder: Path
    model_name: str = "model.onnx"
    viewport: tuple[int, int] = (820, 470)
    page_path: str = "browser/index.html"
    page: Any = None
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    loaded: dict = field(default_factory=dict)

    def __enter__(self) -> BrowserPage:
        if not CHROMIUM.is_file():
            raise ClientUnavailable(f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
        if not (NODE_EXAMPLE / "node_modules" / "onnxruntime-web").is_dir():
            raise ClientUnavailable("examples/node has no node_modules (the page loads onnxruntime-web from there)")
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise ClientUnavailable(
                "Python playwright is not installed (examples/setup.sh; it needs no browser download)"
            ) from None
        handler = type("Handler", (_Handler,), {"served_folder": self.folder})
        self._server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(EXAMPLES))
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/"
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            width, height = self.viewport
            self.page = self._browser.new_page(viewport={"width": width, "height": height})
            self.page.set_default_timeout(120_000)
            self.page.on("pageerror", lambda error: self.errors.append(str(error)))
            self.page.on("console", self._on_console)
            if self.page_path:
                self.page.goto(f"{self.base_url}{self.page_path}?model={SERVED_PREFIX}{self.model_name}")
                self.loaded = self.page.evaluate("() => window.cifarEdgeReady")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _on_console(self, message: Any) -> None:
        self.console.append(message.text)
        if message.type == "error":
            self.errors.append(message.text)

    def __exit__(self, *_exc: object) -> None:
        browser, playwright = getattr(self, "_browser", None), getattr(self, "_playwright", None)
        if browser is not None:
            browser.close()
        if playwright is not None:
            playwright.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def url(self, name: str | Path) -> str:
        """The URL path of a file in ``folder``, as the page fetches it."""
        return f"{SERVED_PREFIX}{Path(name).as_posix()}"

    def load_model(self, name: str) -> dict:
        """Load another model of ``folder`` into the page (``{"model", "contract"}`` or ``{"error"}``)."""
        return dict(self.page.evaluate("url => window.loadModelUrl(url)", self.url(name)))

    def classify(self, paths: list[Path]) -> dict[str, dict]:
        """{path string: the page's answer} for files inside ``folder``, one after another (batch 1), in one call.

        Each answer also has ``ms``: the page's time for compositing and the session run."""
        urls = [self.url(Path(path).relative_to(self.folder)) for path in paths]
        answers = self.page.evaluate(_CLASSIFY_ALL, urls)
        return {str(path): {k: v for k, v in a.items() if k != "path"} for path, a in zip(paths, answers, strict=True)}


# ---------------------------------------------------------------------------------------------------------------
# Agreement.


@dataclass
class Agreement:
    """How one client's answers agree with the reference's on the same files."""

    images: int = 0
    same_top1: int = 0
    differing: list[str] = field(default_factory=list)  # files with another top-1 (or an error on one side only)
    max_diff_lossless: float = 0.0  # max |p_client - p_reference| over PNG files
    max_diff_lossy: float = 0.0  # the same over the other files (JPEG: decoders may differ by an LSB)
    lossless_images: int = 0
    per_file: dict[str, float] = field(default_factory=dict)  # max |p difference| per file

    @property
    def top1_percent(self) -> float:
        return 100.0 * self.same_top1 / max(self.images, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "same_top1": self.same_top1,
            "top1_agreement_percent": round(self.top1_percent, 3),
            "differing": self.differing,
            "lossless_images": self.lossless_images,
            "max_prob_diff_lossless": self.max_diff_lossless,
            "max_prob_diff_lossy": self.max_diff_lossy,
        }


def compare(reference: dict[str, dict], answers: dict[str, dict], keys: list[str] | None = None) -> Agreement:
    """Agreement of ``answers`` with ``reference`` over ``keys`` (default: every reference key)."""
    result = Agreement()
    for key in keys if keys is not None else list(reference):
        expected, got = reference[key], answers.get(key, {"error": "no answer"})
        result.images += 1
        if "error" in expected or "error" in got:
            if ("error" in expected) != ("error" in got):
                result.differing.append(key)
            else:
                result.same_top1 += 1
            continue
        if got["label"] == expected["label"]:
            result.same_top1 += 1
        else:
            result.differing.append(key)
        difference = float(np.max(np.abs(np.subtract(got["probabilities"], expected["probabilities"]))))
        result.per_file[key] = difference
        if key.lower().endswith(LOSSLESS_SUFFIXES):
            result.lossless_images += 1
            result.max_diff_lossless = max(result.max_diff_lossless, difference)
        else:
            result.max_diff_lossy = max(result.max_diff_lossy, difference)
    return result

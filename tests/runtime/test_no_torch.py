"""The runtime never imports torch: checked in a fresh interpreter running a real classification, and statically."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import cifar_edge.runtime

RUNTIME_DIR = Path(cifar_edge.runtime.__file__).parent
# torch & co. are training-only; `onnx` is not in the runtime's base install either (only onnxruntime is).
FORBIDDEN_ROOTS = {"torch", "torchvision", "onnx", "onnxscript", "safetensors", "matplotlib"}
FORBIDDEN_PACKAGES = ("cifar_edge.train", "cifar_edge.export")

FRESH_PROCESS = """
import json, sys
image, model = sys.argv[1], sys.argv[2]
import cifar_edge.runtime
light = "onnxruntime" not in sys.modules  # the package import itself stays light
from cifar_edge.runtime import Classifier
from cifar_edge.runtime.infer.cli import main
sys.argv = ["cifar-infer", image, "--model", model, "--json", "--provider", "auto"]
try:
    main()
except SystemExit as done:
    code = done.code
with Classifier(model) as classifier:
    label = classifier.predict(image).label
sys.argv = ["cifar-infer", "--doctor", "--json", "--model", model]
try:
    main()
except SystemExit as done:
    doctor_code = done.code
banned = ("torch", "torchvision", "onnx", "cifar_edge.train", "cifar_edge.export")
loaded = sorted(m for m in sys.modules if m in banned or m.startswith(tuple(b + "." for b in banned)))
print(json.dumps({"light": light, "code": code, "label": label, "doctor_code": doctor_code, "loaded": loaded}))
"""


def test_fresh_process_classifies_without_importing_torch(colour_model: Path, red_png: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(red_png), str(colour_model)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary == {"light": True, "code": 0, "label": "red", "doctor_code": 0, "loaded": []}
    assert json.loads(done.stdout.splitlines()[0])["label"] == "red"  # the CLI's own JSON record


def _package_of(source: Path, root: Path, root_package: str) -> str:
    """The package a module file belongs to: ``root_package`` plus its folders under ``root``."""
    parts = source.relative_to(root).parent.parts
    return ".".join((root_package, *parts))


def _imported_names(node: ast.AST, package: str) -> list[str]:
    """Absolute module names an import statement refers to; relative imports resolve against ``package``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level == 0:
        base = node.module or ""
    else:
        package_parts = package.split(".")
        if node.level > len(package_parts):
            return [f"<relative import beyond {package}>"]
        base = ".".join(
            [*package_parts[: len(package_parts) - node.level + 1], *([node.module] if node.module else [])]
        )
    # `from pkg import name` may import a sub-module: check `pkg.name` as well as `pkg`.
    return [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]


def _is_forbidden(name: str) -> bool:
    return name.split(".")[0] in FORBIDDEN_ROOTS or any(
        name == package or name.startswith(package + ".") for package in FORBIDDEN_PACKAGES
    )


def find_forbidden_imports(root: Path, root_package: str) -> tuple[list[str], list[Path]]:
    """Every forbidden import in every .py under ``root`` (recursively), and the files scanned."""
    offenders = []
    sources = sorted(root.rglob("*.py"))
    for source in sources:
        package = _package_of(source, root, root_package)
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            bad = [name for name in _imported_names(node, package) if _is_forbidden(name) or name.startswith("<")]
            if bad:  # one report per statement: the first forbidden name it refers to
                offenders.append(f"{source.relative_to(root).as_posix()}:{node.lineno} imports {bad[0]}")
    return offenders, sources


def test_no_runtime_module_imports_training_code() -> None:
    offenders, sources = find_forbidden_imports(RUNTIME_DIR, "cifar_edge.runtime")
    assert offenders == []
    scanned_packages = {source.parent for source in sources}
    sub_packages = {init.parent for init in RUNTIME_DIR.glob("*/__init__.py")}
    assert sub_packages, "the runtime has sub-packages: the scan must reach them"
    assert sub_packages <= scanned_packages  # not vacuous: every sub-package's files were read


def test_checker_catches_relative_and_absolute_imports(tmp_path: Path) -> None:
    root = tmp_path / "runtime"
    (root / "infer").mkdir(parents=True)
    (root / "__init__.py").write_text('"""Fake runtime."""\n')
    (root / "infer" / "__init__.py").write_text('"""Fake sub-package."""\n')
    (root / "infer" / "cli.py").write_text(
        "from ...train import x\n"  # cifar_edge.train
        "from ... import export\n"  # cifar_edge.export, as a sub-module
        "from . import report\n"  # cifar_edge.runtime.infer.report: allowed
        "from ..contract import Contract\n"  # allowed
        "def late():\n    import torch.nn\n"
    )
    (root / "classifier.py").write_text("from onnx import helper\nfrom .infer import cli\n")
    offenders, _ = find_forbidden_imports(root, "cifar_edge.runtime")
    assert offenders == [
        "classifier.py:1 imports onnx",
        "infer/cli.py:1 imports cifar_edge.train",
        "infer/cli.py:2 imports cifar_edge.export",
        "infer/cli.py:6 imports torch.nn",
    ]

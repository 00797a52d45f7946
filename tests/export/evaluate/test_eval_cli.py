"""``cifar-eval``: every model kind, eval.json schema, plots, exit codes, and the torch-free ONNX path."""

from __future__ import annotations

import hashlib
import json
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from evalbench_fixtures import eval_images_fixture, eval_run_fixture  # noqa: F401  (session fixtures)
from PIL import Image
from typer.testing import CliRunner

from cifar_edge.export.evaluate.cli import app
from cifar_edge.runtime.classifier import Classifier
from cifar_edge.runtime.contract import CIFAR10_CLASS_NAMES, Contract
from cifar_edge.runtime.preprocess import normalize_batch

runner = CliRunner()
REPORT_KEYS = {
    "schema_version",
    "kind",
    "model",
    "input_form",
    "data",
    "class_names",
    "images_total",
    "images_skipped",
    "skipped",
    "images",
    "top1_accuracy",
    "top5_accuracy",
    "top5_k",
    "mean_class_accuracy",
    "correct",
    "per_class",
    "confusion_matrix",
    "most_confused",
    "misclassified_total",
    "misclassified",
    "timing",
    "files",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def evaluate(*args: str):
    return runner.invoke(app, list(args))


def classifier_count(model: Path, test_folder: Path) -> tuple[int, np.ndarray]:
    """(correct, confusion) computed by the runtime Classifier over each class folder, outside cifar-eval."""
    matrix = np.zeros((3, 3), dtype=int)
    with Classifier(model, "cpu") as classifier:
        for true_index, name in enumerate(classifier.contract.class_names):
            for prediction in classifier.predict(sorted((test_folder / name).glob("*.png"))):
                matrix[true_index, prediction.index] += 1
    return int(np.trace(matrix)), matrix


def test_onnx_report_schema_plots_and_independent_count(eval_run: Path, eval_images: Path) -> None:
    model = eval_run / "model.onnx"
    result = evaluate(str(model), "--data", str(eval_images), "--json", "--provider", "cpu")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == REPORT_KEYS and report["schema_version"] == 1
    assert report["model"]["format"] == "ONNX" and report["model"]["provider"] == "cpu"
    assert report["model"]["precision"] == "fp32" and report["model"]["sha256"]
    assert report["data"]["layout"] == "test/<class>/" and report["images"] == 18
    correct, matrix = classifier_count(model, eval_images / "test")
    assert report["correct"] == correct and report["confusion_matrix"]["counts"] == matrix.tolist()
    assert report["top1_accuracy"] == pytest.approx(correct / 18)
    assert [row["images"] for row in report["per_class"]] == [6, 6, 6]
    assert report["timing"]["images_per_second"] > 0
    output_dir = eval_run / "model.onnx.eval"  # the documented default: "<model file name>.eval" beside it
    assert report["files"]["output_dir"] == str(output_dir)
    assert json.loads((output_dir / "eval.json").read_text())["confusion_matrix"] == report["confusion_matrix"]
    for name in ("confusion.png", "misclassified.png"):
        data = (output_dir / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 2000
        with Image.open(output_dir / name) as image:
            image.verify()


def test_torch_models_agree_with_onnx(eval_run: Path, eval_images: Path, tmp_path: Path) -> None:
    """Run folder, checkpoint.pt and TorchScript give the ONNX model's counts (the gate proved 100% agreement)."""
    from cifar_edge.train.checkpoint import write_checkpoint
    from cifar_edge.train.run_folder import load_run

    run = load_run(eval_run)
    checkpoint = tmp_path / "checkpoint.pt"
    write_checkpoint(
        checkpoint,
        {
            "architecture": run.record["architecture"],
            "contract": run.contract.to_dict(),
            "model": {  # deliberately different live weights: the weight average must be the one used
                name: torch.randn_like(value) if value.is_floating_point() else value
                for name, value in run.model.state_dict().items()
            },
            "weight_average": run.model.state_dict(),  # what the run folder's weights are: the average wins
        },
    )
    reports = {}
    for model in (eval_run / "model.onnx", eval_run, checkpoint, eval_run / "model.torchscript.pt"):
        output_dir = str(tmp_path / "out" / model.name)
        result = evaluate(str(model), "--data", str(eval_images), "--json", "--no-plots", "-o", output_dir)
        assert result.exit_code == 0, result.stderr
        reports[model.name] = json.loads(result.stdout)
    kinds = {name: report["model"]["kind"] for name, report in reports.items()}
    assert kinds == {
        "model.onnx": "onnx",
        eval_run.name: "run",
        "checkpoint.pt": "checkpoint",
        "model.torchscript.pt": "torchscript",
    }
    matrices = {name: report["confusion_matrix"]["counts"] for name, report in reports.items()}
    assert len({json.dumps(matrix) for matrix in matrices.values()}) == 1, matrices


def test_onnx_evaluation_imports_no_torch_and_survives_without_matplotlib(
    eval_run: Path, eval_images: Path, tmp_path: Path
) -> None:
    """A fresh interpreter where torch & co. cannot be imported at all (as with the runtime-only install)."""
    script = """
import json, sys
blocked = sys.argv[4].split(",")
for name in blocked:
    sys.modules[name] = None  # `import name` now raises ImportError
from cifar_edge.export.evaluate.cli import main
sys.argv = ["cifar-eval", sys.argv[1], "--data", sys.argv[2], "-o", sys.argv[3], "--json"]
try:
    main()
except SystemExit as done:
    code = done.code
heavy = ("torch", "torchvision", "onnx", "safetensors", "cifar_edge.train")
loaded = sorted(m for m in sys.modules if sys.modules[m] is not None and m.startswith(heavy))
print(json.dumps({"code": code, "loaded": [m for m in loaded if m.split(".")[0] != "onnxruntime"]}))
"""
    no_torch = "torch,torchvision,onnx,safetensors"
    for blocked, plots in ((no_torch, True), (no_torch + ",matplotlib", False)):
        output_dir = tmp_path / blocked.replace(",", "_")
        done = subprocess.run(
            [sys.executable, "-c", script, str(eval_run / "model.onnx"), str(eval_images), str(output_dir), blocked],
            capture_output=True,
            text=True,
            timeout=120,
        )
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary == {"code": 0, "loaded": []}, done.stderr
        report = json.loads((output_dir / "eval.json").read_text())
        assert report["images"] == 18
        assert (output_dir / "confusion.png").is_file() is plots
        if not plots:
            assert "plots skipped: matplotlib is not installed" in done.stderr
            assert report["files"]["plots_skipped"].startswith("matplotlib is not installed")


def test_unknown_class_folder_is_exit_2(eval_run: Path, tmp_path: Path) -> None:
    (tmp_path / "red").mkdir()
    (tmp_path / "cats").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "red" / "a.png")
    result = evaluate(str(eval_run / "model.onnx"), "--data", str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "'cats' is not a class of this model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_images_are_skipped_and_listed_exit_1(eval_run: Path, tmp_path: Path) -> None:
    for name in ("red", "green"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (40, 30), (200, 10, 10) if name == "red" else (10, 200, 10)).save(tmp_path / name / "ok.png")
    (tmp_path / "red" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 nothing more")
    result = evaluate(str(eval_run / "model.onnx"), "--data", str(tmp_path), "--json", "-o", str(tmp_path / "o"))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["images"] == 2 and report["images_skipped"] == 1
    assert report["skipped"][0]["path"].endswith("truncated.jpg")
    assert "truncated.jpg" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{missing}", "--data", "{data}"], "model not found"),
        (["{text}", "--data", "{data}"], "not an ONNX model"),
        (["{folder}", "--data", "{data}"], "not a cifar-train run folder"),
        (["{onnx}", "--data", "{missing}"], "no such folder"),
        (["{onnx}", "--data", "{data}", "--batch-size", "0"], "--batch-size"),
        (["{onnx}"], "--data"),
    ],
)
def test_usage_and_model_errors_are_exit_2(
    eval_run: Path, eval_images: Path, tmp_path: Path, arguments: list[str], message: str
) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    names = {
        "missing": tmp_path / "missing",
        "text": text,
        "folder": tmp_path,
        "data": eval_images,
        "onnx": eval_run / "model.onnx",
    }
    result = evaluate(*(argument.format(**names) for argument in arguments))
    assert result.exit_code == 2
    assert message in result.output + result.stderr


@pytest.mark.parametrize("model_name", ["model.onnx", ""])
def test_unavailable_provider_is_exit_3(eval_run: Path, eval_images: Path, model_name: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: cuda is available here")
    result = evaluate(str(eval_run / model_name), "--data", str(eval_images), "--provider", "cuda")
    assert result.exit_code == 3
    assert "--provider cuda is unavailable" in result.stderr and "\n" not in result.stderr.strip()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ten_class_run(tmp_path: Path) -> tuple[Path, Contract]:
    """A run folder whose model knows CIFAR-10's classes in a shuffled order (labels must be matched by name)."""
    from cifar_edge.train.models import build_model
    from cifar_edge.train.run_folder import save_model_files

    torch.manual_seed(1)
    order = [CIFAR10_CLASS_NAMES[index] for index in np.random.default_rng(0).permutation(10)]
    contract = Contract(class_names=tuple(order))
    kwargs = {"num_classes": 10, "widths": [8, 16, 16]}
    model = build_model("airnet", **kwargs)
    model.init_whitening(torch.randn(16, 3, 32, 32))
    save_model_files(
        tmp_path / "run",
        model,
        {"architecture": {"name": "airnet", "kwargs": kwargs}, "contract": contract.to_dict(), "metrics": {}},
    )
    return tmp_path / "run", contract


def test_cifar10_test_split_is_read_through_torchvision(
    ten_class_run: tuple[Path, Contract], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local CIFAR-10 test batch (torchvision's own format and MD5 check), labels mapped to the model by name."""
    from torchvision.datasets import CIFAR10

    from cifar_edge.train.run_folder import load_run

    run_dir, contract = ten_class_run
    folder = tmp_path / "root" / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(20, 3, 32, 32), dtype=np.uint8)
    labels = [index % 10 for index in range(20)]
    test_batch = folder / "test_batch"
    test_batch.write_bytes(pickle.dumps({"data": pixels.reshape(20, -1), "labels": labels}))
    meta = folder / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": list(CIFAR10_CLASS_NAMES)}))
    md5 = {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in (test_batch, meta)}
    monkeypatch.setattr(CIFAR10, "train_list", [])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5[meta.name]})

    result = evaluate(str(run_dir), "--data", "cifar10", "--data-root", str(tmp_path / "root"), "--json", "--no-plots")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    run = load_run(run_dir)
    images = np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))
    with torch.no_grad():
        predicted = run.model(torch.from_numpy(normalize_batch(images, contract))).argmax(1).numpy()
    truth = np.asarray([contract.class_names.index(CIFAR10_CLASS_NAMES[label]) for label in labels])
    assert report["correct"] == int((predicted == truth).sum())
    assert [row["images"] for row in report["per_class"]] == [2] * 10
    assert report["data"]["source"] == "cifar10" and report["files"]["plots_skipped"] == "--no-plots"


def test_cifar10_download_failure_is_one_line_exit_2(
    ten_class_run: tuple[Path, Contract], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{_closed_port()}/cifar-10-python.tar.gz")
    result = evaluate(str(ten_class_run[0]), "--data", "cifar10", "--data-root", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert "CIFAR-10 is missing" in result.stderr and "--data-root" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cifar10_needs_cifar10_classes(eval_run: Path) -> None:
    result = evaluate(str(eval_run / "model.onnx"), "--data", "cifar10")
    assert result.exit_code == 2 and "does not know CIFAR-10's classes" in result.stderr

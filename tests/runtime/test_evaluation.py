"""The torch-free evaluation core: labelled folders read by class name, and metrics checked by independent counts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from runtime_helpers import TINY_CLASSES, build_colour_model, save_model, write_colour_folder

from cifar_edge.runtime.classifier import Classifier
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.evaluation import compute_metrics, confusion_matrix, evaluate, most_confused_pairs
from cifar_edge.runtime.labelled import (
    ArrayImages,
    LabelledDataError,
    evaluation_folder,
    load_labelled_folder,
    resolve_image_folder,
    stratified_subset,
)


@pytest.fixture(scope="module")
def contract(colour_contract: Contract) -> Contract:
    return colour_contract  # the colour models' contract (conftest.py)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, contract: Contract) -> Path:
    return save_model(build_colour_model(contract), tmp_path_factory.mktemp("eval_model") / "colour.onnx")


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``test/<class>/*``: 4 images per class, plus deliberate mistakes (a red and a blue image filed as "green",
    a blue one filed as "red"), one corrupt file, and a train/ folder that must be ignored."""
    root = tmp_path_factory.mktemp("toy_set")
    write_colour_folder(root / "test", per_class=4, seed=3)
    write_colour_folder(root / "train", per_class=1, seed=4)
    mislabelled = {"green": [("red", "0000"), ("blue", "0001")], "red": [("blue", "0002")]}
    for folder, moves in mislabelled.items():
        for source_class, name in moves:
            shutil.copy(root / "test" / source_class / f"{name}.png", root / "test" / folder / f"from_{name}.png")
    (root / "test" / "blue" / "nested").mkdir()
    shutil.copy(root / "test" / "blue" / "0003.png", root / "test" / "blue" / "nested" / "deep.png")
    (root / "test" / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "test" / "red" / ".hidden.png").write_bytes(b"ignored")
    return root


def independent_predictions(model: Path, files: list[Path]) -> np.ndarray:
    """Top-1 of each file with onnxruntime directly: Pillow RGB / 255, NCHW (the colour contract is unnormalised)."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    batch = np.stack([np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0 for path in files])
    (logits,) = session.run(None, {"images": batch.transpose(0, 3, 1, 2)})
    return logits.argmax(axis=1)


def test_accuracy_agrees_with_an_independent_count(model: Path, toy_set: Path, contract: Contract) -> None:
    data = load_labelled_folder(toy_set, contract)
    with Classifier(model, "cpu") as classifier:
        report = evaluate(classifier, data, contract, batch_size=5)

    good = [Path(source) for source in data.sources if not source.endswith("broken.png")]
    truth = np.asarray([TINY_CLASSES.index(path.relative_to(toy_set / "test").parts[0]) for path in good])
    predicted = independent_predictions(model, good)
    assert report["images"] == len(good) == 16  # 12 + 3 mislabelled + 1 nested; broken skipped, hidden ignored
    assert report["images_total"] == 17 and report["images_skipped"] == 1
    assert report["skipped"][0]["path"].endswith("broken.png") and report["skipped"][0]["error"]
    assert report["correct"] == int((predicted == truth).sum()) == 13
    assert report["top1_accuracy"] == pytest.approx(13 / 16)
    assert report["top5_k"] == 3 and report["top5_accuracy"] == 1.0
    expected_matrix = np.zeros((3, 3), dtype=int)
    for true_index, predicted_index in zip(truth, predicted, strict=True):
        expected_matrix[true_index, predicted_index] += 1
    assert report["confusion_matrix"]["counts"] == expected_matrix.tolist()
    for row in report["per_class"]:
        members = truth == row["index"]
        assert row["images"] == int(members.sum())
        assert row["accuracy"] == pytest.approx(float((predicted[members] == truth[members]).mean()))
    assert {(pair["true"], pair["predicted"], pair["count"]) for pair in report["most_confused"]} == {
        ("green", "red", 1),
        ("green", "blue", 1),
        ("red", "blue", 1),
    }
    mistakes = {Path(item["source"]).name: (item["true"], item["predicted"]) for item in report["misclassified"]}
    assert mistakes == {
        "from_0000.png": ("green", "red"),
        "from_0001.png": ("green", "blue"),
        "from_0002.png": (
            "red",
            "blue",
        ),
    }
    confidences = [item["confidence"] for item in report["misclassified"]]
    assert confidences == sorted(confidences, reverse=True)
    json.dumps(report)  # JSON-serialisable as it stands


def test_a_predict_function_and_the_classifier_give_the_same_report(
    model: Path, toy_set: Path, contract: Contract
) -> None:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    data = load_labelled_folder(toy_set, contract)
    from_function = evaluate(lambda batch: session.run(None, {"images": batch})[0], data, contract, batch_size=4)
    with Classifier(model, "cpu") as classifier:
        from_classifier = evaluate(classifier, data, contract, batch_size=7)
    for key in ("top1_accuracy", "top5_accuracy", "confusion_matrix", "per_class", "most_confused"):
        assert from_function[key] == from_classifier[key]


def test_class_folders_are_matched_by_name_not_position(model: Path, tmp_path: Path, contract: Contract) -> None:
    """The model's class order differs from the sorted folder order; a missing class is allowed and reported."""
    write_colour_folder(tmp_path, per_class=2)
    shutil.rmtree(tmp_path / "green")
    data = load_labelled_folder(tmp_path, contract)
    assert [contract.class_names[label] for label in data.labels] == ["blue", "blue", "red", "red"]
    assert data.description["classes_missing"] == ["green"] and data.description["layout"] == "<class>/"
    with Classifier(model, "cpu") as classifier:
        report = evaluate(classifier, data, contract)
    assert report["top1_accuracy"] == 1.0
    green = next(row for row in report["per_class"] if row["class"] == "green")
    assert green == {"class": "green", "index": 1, "images": 0, "correct": 0, "accuracy": None}
    assert report["mean_class_accuracy"] == 1.0  # over the classes that have images


def test_a_folder_the_model_does_not_know_is_a_one_line_error(tmp_path: Path, contract: Contract) -> None:
    write_colour_folder(tmp_path / "test", per_class=1)
    (tmp_path / "test" / "purple").mkdir()
    with pytest.raises(LabelledDataError) as error:
        load_labelled_folder(tmp_path, contract)
    message = str(error.value)
    assert "'purple'" in message and "not a class of this model" in message and "red, green, blue" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("layout", "expected"),
    [(("test", "val"), "test"), (("val",), "val"), (("train", "val"), "val"), ((), "")],
)
def test_layout_preference(tmp_path: Path, layout: tuple[str, ...], expected: str) -> None:
    for name in layout:
        (tmp_path / name).mkdir()
    assert evaluation_folder(tmp_path) == (tmp_path / expected if expected else tmp_path)


@pytest.mark.parametrize(
    ("layout", "validation", "evaluation"),
    [
        (("train", "val", "test"), "val", "test"),
        (("train", "test"), "test", "test"),
        (("train", "val"), "val", "val"),
        (("train",), None, None),
        (("val", "test"), "val", "test"),
    ],
)
def test_one_rule_for_the_held_out_folder(
    tmp_path: Path, layout: tuple[str, ...], validation: str | None, evaluation: str | None
) -> None:
    """Checking a model while it is made reads val/ first; measuring the finished model reads test/ first."""
    for name in layout:
        (tmp_path / name).mkdir()
    for purpose, chosen in (("validation", validation), ("evaluation", evaluation)):
        folders = resolve_image_folder(tmp_path, purpose)
        assert folders.held_out == (tmp_path / chosen if chosen else None)
        assert folders.train == (tmp_path / "train" if "train" in layout else None)
        assert folders.unused == tuple(name for name in ("val", "test") if name in layout and name != chosen)


def test_unusable_folders_are_refused(tmp_path: Path, contract: Contract) -> None:
    (tmp_path / "train" / "red").mkdir(parents=True)
    with pytest.raises(LabelledDataError, match="has train/ but no test/ or val/"):
        load_labelled_folder(tmp_path, contract)
    with pytest.raises(LabelledDataError, match="no such folder"):
        load_labelled_folder(tmp_path / "missing", contract)
    (tmp_path / "empty" / "red").mkdir(parents=True)
    with pytest.raises(LabelledDataError, match="hold no image files"):
        load_labelled_folder(tmp_path / "empty", contract)


def test_compute_metrics_on_known_scores() -> None:
    classes = ("a", "b", "c", "d", "e", "f")
    labels = np.array([0, 0, 1, 2, 2, 2, 5])
    scores = np.full((7, 6), -5.0)
    predicted = [0, 1, 1, 1, 1, 2, 4]
    for row, index in enumerate(predicted):
        scores[row, index] = 5.0
    scores[1, 0] = 4.0  # image 1: its true class is second best
    report = compute_metrics(scores, labels, classes)
    assert report["top1_accuracy"] == pytest.approx(3 / 7) and report["top5_k"] == 5
    # Image 6 (true "f"): "e" scores 5, the rest tie at -5 and rank in class order, so "f" comes sixth.
    assert report["top5_accuracy"] == pytest.approx(6 / 7)
    assert report["confusion_matrix"]["counts"][2] == [0, 2, 1, 0, 0, 0]
    assert report["most_confused"][0] == {"true": "c", "predicted": "b", "count": 2, "share_of_true_class": 2 / 3}
    assert [row["accuracy"] for row in report["per_class"]] == [0.5, 1.0, pytest.approx(1 / 3), None, None, 0.0]
    assert report["misclassified_total"] == 4
    probabilities = compute_metrics(np.eye(2), np.array([0, 1]), ("x", "y"), output_kind="probabilities")
    assert probabilities["top1_accuracy"] == 1.0


def test_confusion_helpers_and_stratified_subset() -> None:
    matrix = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 0, 0, 1]), 3)
    assert matrix.tolist() == [[1, 0, 0], [2, 0, 0], [0, 1, 0]]
    assert [(pair["true"], pair["count"]) for pair in most_confused_pairs(matrix, ("x", "y", "z"))] == [
        ("y", 2),
        ("z", 1),
    ]
    labels = np.array([0] * 10 + [1] * 3 + [2] * 10)
    subset = stratified_subset(labels, 7)
    assert len(subset) == 7 and sorted(np.bincount(labels[subset]).tolist()) == [2, 2, 3]
    images = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    arrays = ArrayImages(images, np.array([0, 1, 2]), ("x", "y", "z"), {"source": "arrays"})
    assert [len(batch.indices) for batch in arrays.batches(2)] == [2, 1]


def test_symlink_loops_and_second_paths_are_read_once(tmp_path: Path, contract: Contract) -> None:
    root = write_colour_folder(tmp_path / "data", per_class=2, seed=5)
    (root / "red" / "loop").symlink_to("..", target_is_directory=True)  # back to data/: every class again
    (root / "blue" / "more").symlink_to(root / "green", target_is_directory=True)  # green's files, labelled blue
    warnings: list[str] = []
    data = load_labelled_folder(root, contract, warn=warnings.append)
    assert len(data) == 6 and sorted(np.bincount(data.labels).tolist()) == [2, 2, 2]
    assert warnings == [
        f"skipped {root / 'blue' / 'more'}: the same folder as {root / 'green'}, already read "
        "(each real folder is read once)",
        f"skipped {root / 'red' / 'loop'}: a symlink loop (it leads back to {root})",
    ]
    assert data.description["skipped_folders"] == warnings  # recorded in eval.json too

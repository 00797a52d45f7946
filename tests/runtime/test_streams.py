"""Streams: the thread plan, the batch split, and a Classifier whose pool threads run the session themselves."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from runtime_helpers import build_colour_model, save_model

from cifar_edge.runtime import Classifier, Failure
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.session import Concurrency, choose_concurrency, split_bounds, usable_cpu_count


def test_thread_plan_follows_what_the_caller_fixed() -> None:
    assert choose_concurrency("cpu", None, None, 4) == Concurrency(1, 4)  # one single-thread run per core
    assert choose_concurrency("auto", None, None, 2) == Concurrency(1, 2)
    assert choose_concurrency("cuda", None, None, 4) == Concurrency(4, 1)  # a GPU: one run, every core
    assert choose_concurrency("cpu", 3, None, 4) == Concurrency(3, 1)  # threads alone: one run with that many
    assert choose_concurrency("cpu", None, 2, 4) == Concurrency(2, 2)  # streams alone: the cores shared
    assert choose_concurrency("cpu", None, 8, 4) == Concurrency(1, 8)
    assert choose_concurrency("cpu", 2, 3, 4) == Concurrency(2, 3)
    for bad in ((0, None), (None, 0)):
        with pytest.raises(ValueError, match="must be >= 1"):
            choose_concurrency("cpu", *bad, 2)


@pytest.mark.parametrize("count", [0, 1, 2, 5, 64, 65])
@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("unit", [1, 4])
def test_split_covers_every_row_once_in_whole_units(count: int, parts: int, unit: int) -> None:
    bounds = split_bounds(count, parts, unit)
    assert len(bounds) <= parts
    assert [row for start, stop in bounds for row in range(start, stop)] == list(range(count))
    assert all(stop > start for start, stop in bounds)
    assert all((stop - start) % unit == 0 for start, stop in bounds[:-1])
    if count >= parts * unit:
        assert len(bounds) == parts  # every stream gets work when there is enough


def test_default_cpu_classifier_runs_one_single_thread_session_per_core(colour_model: Path) -> None:
    with Classifier(colour_model, "cpu") as classifier:
        assert classifier.streams == usable_cpu_count()
        assert classifier.intra_op_threads == 1
        assert classifier.session.get_session_options().intra_op_num_threads == 1
    with Classifier(colour_model, "cpu", intra_op_threads=2) as classifier:
        assert (classifier.streams, classifier.intra_op_threads) == (1, 2)
        assert classifier.session.get_session_options().intra_op_num_threads == 2
    with Classifier(colour_model, "cpu", streams=3, decode_workers=1) as classifier:
        assert classifier.streams == 3 and classifier.decode_workers == 3  # one pool thread per stream at least


class RecordingSession:
    """The real session, noting which thread ran each call and how many rows it got."""

    def __init__(self, session: Any) -> None:
        self.session, self.calls, self.lock = session, [], threading.Lock()

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
        with self.lock:
            self.calls.append((threading.current_thread().name, len(next(iter(feeds.values())))))
        return self.session.run(outputs, feeds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def test_streams_split_each_batch_and_agree_with_one_run(
    colour_model: Path, colour_images: Path, tmp_path: Path
) -> None:
    files = sorted(colour_images.rglob("*.png"))  # 12 images
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    items = [*files[:5], broken, *files[5:]]
    with Classifier(colour_model, "cpu", streams=1, intra_op_threads=1) as single:
        reference = list(single.predict_iter(items, batch_size=8))
        reference_logits = single.logits(np.stack([single.prepare(f) for f in files]))
    with Classifier(colour_model, "cpu", streams=3) as streamed:
        recorder = RecordingSession(streamed.session)
        streamed.session = recorder
        results = list(streamed.predict_iter(items, batch_size=8))
        assert all(name.startswith("cifar-decode") for name, _ in recorder.calls)  # the pool ran the model
        assert sorted(rows for _, rows in recorder.calls) == [2, 2, 2, 3, 3]  # 3 + 2 (one failed) + 2, then 3 + 2
        recorder.calls.clear()
        logits = streamed.logits(np.stack([streamed.prepare(f) for f in files]))
        assert [rows for _, rows in recorder.calls] == [4, 4, 4]
    assert [type(r) for r in results] == [type(r) for r in reference]
    assert isinstance(results[5], Failure) and results[5].source == str(broken)
    for got, expected in zip(results, reference, strict=True):
        if not isinstance(got, Failure):
            assert got.label == expected.label and got.source == expected.source
            assert got.probability == pytest.approx(expected.probability, abs=1e-6)
    np.testing.assert_allclose(logits, reference_logits, atol=1e-6)


def test_streams_run_whole_batches_of_a_fixed_batch_model(
    tmp_path: Path, colour_contract: Contract, colour_images: Path
) -> None:
    files = sorted(colour_images.rglob("*.png"))
    path = save_model(build_colour_model(colour_contract, batch_dim=4), tmp_path / "fixed4.onnx")
    with Classifier(path, "cpu", streams=1) as single, Classifier(path, "cpu", streams=2) as streamed:
        pixels = np.stack([single.prepare(f) for f in files[:10]])
        recorder = RecordingSession(streamed.session)
        streamed.session = recorder
        np.testing.assert_allclose(streamed.logits(pixels), single.logits(pixels), atol=1e-6)
        assert sorted(rows for _, rows in recorder.calls) == [4, 4, 4]  # 8 + 2 rows: whole runs of 4, one padded

"""The interleaved-timing helper that cifar-bench and the bench/ scripts share: round order, warm-up, failures, and
an import that loads no torch (scripts that time onnxruntime alone use it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cifar_edge.export.benchmark.timing import interleaved_rounds, medians, per_second


def test_rounds_interleave_the_jobs_after_their_warm_up() -> None:
    calls: list[str] = []

    def job(name: str):
        return lambda: calls.append(name) or len(calls)

    measured = interleaved_rounds({"a": job("a"), "b": job("b")}, 3, warmup=1)
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert measured.results == {"a": [3, 5, 7], "b": [4, 6, 8]} and measured.failed == {}
    assert medians(measured.results) == {"a": 5, "b": 6}


def test_a_failing_job_is_dropped_with_its_reason_or_raises() -> None:
    def broken() -> float:
        raise RuntimeError("no kernel\nsecond line")

    measured = interleaved_rounds({"ok": lambda: 1.0, "broken": broken}, 2, catch=True)
    assert measured.results == {"ok": [1.0, 1.0], "broken": []} and measured.failed == {"broken": "no kernel"}
    with pytest.raises(RuntimeError):
        interleaved_rounds({"broken": broken}, 1)


def test_per_second_counts_what_the_work_reports() -> None:
    assert per_second(lambda: 10) > 0


def test_the_helper_imports_no_torch() -> None:
    script = "import sys, cifar_edge.export.benchmark.timing; print(sorted(m for m in sys.modules if m == 'torch'))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr

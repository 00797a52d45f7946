"""The project's speed and accuracy targets, checked on a benchmark's CPU rows (docs/evaluation.md, "Targets").

Every target is a ratio of two rows measured in the same run, on the same machine, with the same threads; a
target whose rows are missing (not asked for, skipped or failed) is reported as not measured, never as met.
"""

from __future__ import annotations

from typing import Any

from cifar_edge.export.config import Thresholds

# int8 ONNX vs fp32 ONNX throughput at batch 256 (what static QDQ int8 achieved: docs/history.md, 'int8').
INT8_SPEEDUP = 2.0
# int8 ONNX accuracy may be at most this many percentage points below eager PyTorch: the export gate's own limit.
INT8_MAX_ACCURACY_DROP_PP = Thresholds().int8_max_accuracy_drop_pp
# fp32 ONNX vs eager PyTorch throughput at batch 256.
ONNX_SPEEDUP = 2.0
# Eager PyTorch cold start / ONNX (runtime) cold start.
COLD_START_RATIO = 5.0

_RELATIONS = {
    ">=": lambda measured, threshold: measured >= threshold,
    "<=": lambda measured, threshold: measured <= threshold,
    "<": lambda measured, threshold: measured < threshold,
}


def _cpu_row(rows: list[Any], variant: str) -> Any | None:
    return next((row for row in rows if row.variant == variant and row.provider == "cpu" and row.status == "ok"), None)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _target(name: str, measured: float | None, relation: str, threshold: float, unit: str, detail: str) -> dict:
    met = None if measured is None else bool(_RELATIONS[relation](measured, threshold))
    return {
        "name": name,
        "measured": None if measured is None else round(measured, 4),
        "relation": relation,
        "threshold": threshold,
        "unit": unit,
        "met": met,
        "detail": detail if measured is not None else "not measured: " + detail,
    }


def evaluate_targets(rows: list[Any]) -> list[dict[str, Any]]:
    """The five target checks (``met`` is True, False, or None when a needed row is missing)."""
    eager, fp32, int8 = _cpu_row(rows, "pytorch"), _cpu_row(rows, "onnx-fp32"), _cpu_row(rows, "onnx-int8")

    def value(row: Any | None, name: str) -> float | None:
        return getattr(row, name) if row is not None else None

    int8_speedup = _ratio(value(int8, "throughput_ips"), value(fp32, "throughput_ips"))
    drop = None
    if value(eager, "accuracy") is not None and value(int8, "accuracy") is not None:
        drop = eager.accuracy - int8.accuracy
    onnx_speedup = _ratio(value(fp32, "throughput_ips"), value(eager, "throughput_ips"))
    latency_ratio = _ratio(value(fp32, "latency_p50_ms"), value(eager, "latency_p50_ms"))
    cold_ratio = _ratio(value(eager, "cold_start_s"), value(fp32, "cold_start_s"))
    return [
        _target(
            "int8 ONNX throughput vs fp32 ONNX (CPU, batch 256)",
            int8_speedup,
            ">=",
            INT8_SPEEDUP,
            "x",
            "needs the onnx-int8 and onnx-fp32 CPU rows",
        ),
        _target(
            "int8 ONNX accuracy drop vs PyTorch (CPU)",
            drop,
            "<=",
            INT8_MAX_ACCURACY_DROP_PP,
            "pp",
            "needs the onnx-int8 and pytorch CPU rows",
        ),
        _target(
            "fp32 ONNX throughput vs PyTorch eager (CPU, batch 256)",
            onnx_speedup,
            ">=",
            ONNX_SPEEDUP,
            "x",
            "needs the onnx-fp32 and pytorch CPU rows",
        ),
        _target(
            "fp32 ONNX latency p50 / PyTorch eager p50 (CPU, batch 1)",
            latency_ratio,
            "<",
            1.0,
            "x",
            "needs the onnx-fp32 and pytorch CPU rows",
        ),
        _target(
            "PyTorch eager cold start / ONNX cold start",
            cold_ratio,
            ">=",
            COLD_START_RATIO,
            "x",
            "needs cold starts of the onnx-fp32 and pytorch CPU rows",
        ),
    ]

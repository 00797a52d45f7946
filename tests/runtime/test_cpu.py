"""CPU features for int8: read from /proc/cpuinfo-style text, and the warning an int8 model gives on the wrong CPU."""

from __future__ import annotations

from pathlib import Path

from cifar_edge.runtime.hardware import cpu_features, has_int8_dot_product, int8_warning

ZEN3 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: avx2 avx512f avx512_vnni avx512_bf16\n"


def _features(tmp_path: Path, text: str) -> dict[str, object]:
    (tmp_path / "cpuinfo").write_text(text)
    return cpu_features(tmp_path / "cpuinfo")


def test_flags_and_model_are_read_from_cpuinfo(tmp_path: Path) -> None:
    zen3, zen4 = _features(tmp_path, ZEN3), _features(tmp_path, ZEN4)
    assert zen3["model"] == "AMD EPYC 7B13" and zen3["flags"] == ["avx2"]
    assert has_int8_dot_product(zen3) is False and has_int8_dot_product(zen4) is True
    assert has_int8_dot_product(cpu_features(tmp_path / "missing")) is None  # unknown, not "no"


def test_int8_warning_only_for_8_bit_weights_on_a_cpu_without_dot_products(tmp_path: Path) -> None:
    zen3, zen4 = _features(tmp_path, ZEN3), _features(tmp_path, ZEN4)
    full = {"quantization": {"reduce_range": False}}
    reduced = {"quantization": {"reduce_range": True}}
    assert "VNNI" in (int8_warning(full, zen3) or "")
    assert int8_warning(full, zen4) is None
    assert int8_warning(reduced, zen3) is None
    assert int8_warning({"precision": "fp32"}, zen3) is None and int8_warning(None, zen3) is None

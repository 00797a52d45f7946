"""What this CPU can do for int8: its model and the instruction-set flags that decide how int8 products are summed.

Without VNNI (or AMX), x86 int8 kernels add pairs of u8 x s8 products in saturating int16 (VPMADDUBSW), which can
clip with full 8-bit weights; onnxruntime's quantization docs recommend 7-bit weights (``reduce_range``) there.
"""

from __future__ import annotations

import platform
from pathlib import Path

# Flags (as /proc/cpuinfo spells them) that matter for int8 and bf16 kernels.
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16")
# Any of these sums int8 products in int32 without saturating.
DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, object]:
    """{"model": ..., "machine": ..., "flags": [the INT8_FLAGS this CPU has]}; flags None where unknown."""
    model, flags = None, None
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        if key.strip() == "flags" and flags is None:
            present = set(value.split())
            flags = [flag for flag in INT8_FLAGS if flag in present]
    return {"model": model or platform.processor() or None, "machine": platform.machine(), "flags": flags}


def has_int8_dot_product(features: dict[str, object]) -> bool | None:
    """True/False on x86 where the flags are known; None when they are not (other architectures, no /proc)."""
    flags = features.get("flags")
    if not isinstance(flags, list):
        return None
    return any(flag in flags for flag in DOT_PRODUCT_FLAGS)


def int8_warning(provenance: dict[str, object] | None, features: dict[str, object] | None = None) -> str | None:
    """One line when an int8 model quantized with 8-bit weights (for VNNI/AMX) runs on a CPU without them."""
    quantization = (provenance or {}).get("quantization")
    if not isinstance(quantization, dict) or quantization.get("reduce_range") is not False:
        return None
    if has_int8_dot_product(features or cpu_features()) is not False:
        return None
    return (
        "int8 with 8-bit weights was quantized for a CPU with VNNI/AMX; this CPU has neither, so its int8 sums may "
        "saturate and cost accuracy: re-export with --quantize int8 on a CPU like this one (7-bit weights)"
    )

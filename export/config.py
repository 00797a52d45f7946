"""What ``cifar-export`` does, in one dataclass (formats, precision, opset, the parity gate's thresholds), and how it
fails: the errors and the exit codes the CLI maps them to (documented in docs/export.md).

The formats and precisions an ExportConfig may name are the format table's (``cifar_edge.export.formats``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cifar_edge.runtime.common.command import ExitCode

INT8_WEIGHT_BITS = ("auto", "7", "8")
INT8_GELU = ("sigmoid", "float")  # ExportConfig.int8_gelu

# opset 20 has GELU as one op (Gelu): onnxruntime fuses it and int8 keeps every convolution integer around it
# (docs/export.md, "int8"); onnxruntime runs opset 20 since 1.17. Other values are reached through the ONNX
# version converter and are checked after export.
DEFAULT_OPSET = 20
# Per-channel QDQ quantization needs opset >= 13. Below 18 the ONNX version converter runs and may not reach the
# requested version (for AirNet 15-17 convert, 13-14 stay at 18); the exported opset is checked after export.
MIN_OPSET = 13


@dataclass(frozen=True)
class Thresholds:
    """Pass marks of the parity gate (documented in docs/export.md, overridable on the command line)."""

    # fp32 artifacts (ONNX, TorchScript, exported program): largest allowed |logit difference| against PyTorch.
    # Reordered fp32 sums differ by ~1e-6 on logits of size ~10; 1e-4 leaves room for that and catches real bugs.
    fp32_max_abs_diff: float = 1e-4
    # fp32: fraction of inputs whose top-1 class must equal PyTorch's (1.0 = every single one).
    fp32_min_agreement: float = 1.0
    # fp16 ONNX: top-1 agreement with fp32 PyTorch on the real images (halves carry ~3 significant digits).
    fp16_min_agreement: float = 0.995
    # int8 ONNX: accuracy may fall at most this many percentage points below fp32 PyTorch on the labelled images.
    int8_max_accuracy_drop_pp: float = 1.0
    # Runtime preprocessing (Pillow + numpy) against torchvision's Resize > ToTensor > Normalize, per tensor value.
    preprocess_max_abs_diff: float = 1e-6
    # Pixel form: the graph's Resize against Pillow's bilinear resize, per uint8 value (1 LSB: rounding differs).
    resize_max_lsb: int = 1
    # Pixel form, raw pixels at other sizes (fp32 and fp16): top-1 agreement with the training-time preprocessing.
    # Below 1.0 because that 1 LSB turns near-ties: a 10-minute default run flipped 1 of 128 (2026-12-07, Zen 4).
    sized_min_agreement: float = 0.98


@dataclass(frozen=True)
class ExportConfig:
    """One export request. Defaults are what ``cifar-export RUN_DIR`` does."""

    # Formats of the format table; "all" is expanded by the CLI. A format gets the precision dtype/quantize ask for
    # where the table has that row (ONNX), else fp32.
    formats: tuple[str, ...] = ("onnx",)  # the table's first row (a test holds them together)
    # fp16: fp16 weights and compute with fp32 inputs and outputs (ONNX only).
    dtype: str = "fp32"
    # "int8": static QDQ quantization, per-channel weights (ONNX only). None keeps the float model.
    quantize: str | None = None
    # Where to write: a file for one artifact, a folder for several; None = the run folder, under the table's names.
    output: Path | None = None
    opset: int = DEFAULT_OPSET
    # Test-time augmentation baked into every artifact: None = the run's (run.json architecture.tta, what its
    # final validation accuracy was scored with); "none"/"flip"/"flip_shift" trade accuracy for inference cost
    # (1, 2 or 6 forward passes per image). The gate then compares against the network wrapped the same way.
    tta: str | None = None
    # What the ONNX rows take (runtime/contract.py INPUT_FORMS): "pixels", uint8 NHWC RGB at any size with resize,
    # normalisation and softmax in the graph (formats/pixels.py), or "float", float32 NCHW normalised by the caller.
    # Rows that do not accept --input (TorchScript, torch.export) always take float.
    input_form: str = "pixels"
    # Run the parity gate (strongly recommended; skipping it writes the artifact unverified and says so).
    verify: bool = True
    # Real images compared against PyTorch: a class-stratified subset of the run's validation images (0 = probes only).
    verify_images: int = 1000
    # Training images fed to the int8 calibration (a few hundred are enough for MinMax ranges of a small CNN).
    calibration_images: int = 300
    # int8 weight bits: "auto" = 7 where this CPU has no VNNI/AMX (its int8 sums saturate otherwise), else 8;
    # "7" or "8" to quantize for a CPU other than this one (the artifact records which, cifar-infer checks it).
    int8_weight_bits: str = "auto"
    # int8 GELU (INT8_GELU): "sigmoid" runs it as int8 lookup + multiply, onnxruntime contrib ops (fastest on
    # onnxruntime, gated on accuracy like any int8 file); "float" keeps standard ONNX ops for other runtimes.
    int8_gelu: str = "sigmoid"
    # Labelled ImageFolder (PATH/<class>/* or PATH/train|val|test/<class>/*) to use instead of the run's own data.
    data: Path | None = None
    # Extra image files for the preprocessing-parity check (a photo of another size, odd modes, ...).
    preprocess_files: tuple[Path, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    # Seed for sampling verification/calibration images and for the random batch-shape probes.
    seed: int = 0
    # Batch sizes of the random probes: 1 and 2 catch specialised batch axes, 7 an odd size, 64 a large one.
    probe_batch_sizes: tuple[int, ...] = (1, 2, 7, 64)

    @property
    def reduce_range(self) -> bool | None:
        """7-bit int8 weights (True), 8-bit (False), or None: decided by this CPU."""
        return {"auto": None, "7": True, "8": False}[self.int8_weight_bits]

    @property
    def onnx_precision(self) -> str:
        return "int8" if self.quantize == "int8" else self.dtype


class ExportError(Exception):
    """Base class; ``str()`` is one line and ``exit_code`` is what the CLI returns."""

    exit_code = ExitCode.TOOL_FAILED


class ExportUsageError(ExportError):
    """Bad options, or a run folder that cannot be used (missing files, unknown architecture, bad contract)."""

    exit_code = ExitCode.USAGE


class ExportFailedError(ExportError):
    """The exporter, converter or quantizer itself failed, or wrote a file that does not validate."""

    exit_code = ExitCode.TOOL_FAILED

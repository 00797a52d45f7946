"""onnxruntime against OpenVINO's runtime on the same ONNX files, on this CPU: top-1 accuracy and img/s.

For each ONNX file of a run (fp32 or QDQ int8), on the run's own validation split (rebuilt from run.json):

* onnxruntime through the runtime's engine (``onnx_engine``, CPU provider, ``--threads`` intra-op threads);
* OpenVINO's CPU plugin with ``INFERENCE_NUM_THREADS`` = ``--threads``, each ``PERFORMANCE_HINT`` (LATENCY and
  THROUGHPUT), once with ``INFERENCE_PRECISION_HINT`` pinned to f32 and once at OpenVINO's default precision, which is
  bf16 on CPUs with AMX or AVX512-BF16: that changes accuracy, so it is its own row. The input is reshaped to a fixed
  batch of 256 (the last, short batch is padded), or left dynamic when the graph cannot be reshaped.

Accuracy is top-1 on every validation image; "agree" is how many images get onnxruntime's top-1 class on the same
file and "max|d|" the largest difference of any score from onnxruntime's. Seen with OpenVINO 2026.4 on the CPU:
with f32 pinned, a Gelu that follows a MaxPool is moved before it (fused into the Conv); GELU is not monotonic
(minimum -0.17 at x = -0.75), so max(gelu(x)) != gelu(max(x)) and scores move by up to 0.17 per layer; its default
bf16 path keeps the order.

img/s is at batch 256, the median of interleaved rounds (each round runs every engine of every file in turn, a few
calls each, so machine load hits all of them alike) after a warm-up. Under THROUGHPUT with more than one stream,
one call runs OpenVINO's optimal number of batches concurrently. A file or setting that an engine cannot
read or compile is reported as a failed row with a one-line reason. Prints the CPU and a table; ``--out`` writes
everything as JSON. OpenVINO is bench-only (pip install -e '.[bench]'), never a runtime dependency.

Each file is fed what its contract's input form takes: a float-form file the normalised float32 NCHW images, a
pixel-form file (``cifar-export``'s default, docs/portable.md) the uint8 NHWC pixels, already at the contract size
(there its in-graph Resize is an identity; OpenVINO gets the input reshaped to a fixed [256, H, W, 3]). Scores are
the ``logits`` output in both forms. A pixel-form file also gets ``resized_inputs``: the validation images upscaled
with Pillow to ``--resized`` (WIDTHxHEIGHT) and the ``--photos`` at their natural size, through onnxruntime and
OpenVINO (f32 pinned, and its default precision): top-1 agreement and max |probability difference| with
onnxruntime; and the file's own Resize (the graph cut after it) in both runtimes against Pillow's bilinear resize,
in levels (LSB) of the uint8 output, on the same inputs: the part of the difference that is the resize.

    .venv/bin/python bench/openvino_compare.py RUN_DIR [--files model.onnx,model.int8.onnx] [--threads 1]
        [--rounds 5] [--resized 48x64] [--photos ../shared/data/photos] [--out bench/results/openvino.json]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifar_edge.export.benchmark.timing import interleaved_rounds, medians, per_second, save_record
from cifar_edge.export.engines import onnx_engine
from cifar_edge.export.run_data import run_images
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.contract import CONTRACT_METADATA_KEY, Contract
from cifar_edge.runtime.hardware import cpu_features
from cifar_edge.runtime.preprocess import normalize_batch
from cifar_edge.train.run_folder import load_run

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
BATCH = 256
CALLS_PER_ROUND = 3
HINTS = ("LATENCY", "THROUGHPUT")
PRECISIONS = ("f32", None)  # None: OpenVINO's own choice (bf16 where the CPU has it)
COMPUTE_LAYERS = ("Convolution", "FullyConnected", "MatMul", "GroupConvolution")
SCORES = "logits"  # the output compared: a float-form file's only one, a pixel-form file's second


@dataclass
class Candidate:
    """One engine with its settings on one file: a row of the table."""

    file: str
    engine: str
    settings: dict[str, Any] = field(default_factory=dict)
    scores: Callable[[np.ndarray], np.ndarray] | None = None  # all inputs -> (n, classes) scores
    step: Callable[[np.ndarray], int] | None = None  # one timed call on a batch -> images it ran
    close: Callable[[], None] = lambda: None
    result: dict[str, Any] = field(default_factory=dict)
    failed: str | None = None


def ov_reason(error: BaseException) -> str:
    """OpenVINO's one-line reason: its messages open with source locations ("Exception from ...", "Check ...")."""
    lines = [" ".join(line.split()) for line in str(error).splitlines() if line.strip()]
    told = [line for line in lines if not line.startswith(("Exception from ", "Check '"))]
    return first_line(told[-1].removeprefix("-- ") if told else error)


def ort_candidate(file: str, path: Path, threads: int) -> Candidate:
    candidate = Candidate(file, "onnxruntime", {"intra_op_threads": threads})
    try:
        engine = onnx_engine(path, "cpu", intra_op_threads=threads)
    except Exception as error:
        candidate.failed = first_line(error)
        return candidate

    def step(batch: np.ndarray) -> int:
        engine.forward(batch)
        return len(batch)

    candidate.scores, candidate.step, candidate.close = (lambda inputs: engine.run(inputs, BATCH)), step, engine.close
    return candidate


def read_fixed_batch(core: Any, path: Path, pixel_size: tuple[int, int] | None = None) -> tuple[Any, str]:
    """The model with its (single) input reshaped to batch 256, or as it is when that cannot be done. A pixel-form
    file ([batch, height, width, 3]) also gets ``pixel_size`` (height, width): the contract size it is fed at."""
    model = core.read_model(str(path))
    shape = model.input(0).get_partial_shape()
    try:
        if pixel_size is not None:
            model.reshape([BATCH, *pixel_size, 3])
            return model, f"fixed {BATCH}x{pixel_size[0]}x{pixel_size[1]}x3"
        model.reshape([BATCH, *(shape[i] for i in range(1, len(shape)))])
        return model, f"fixed {BATCH}"
    except Exception as error:
        return core.read_model(str(path)), f"as read ({shape}; reshape failed: {ov_reason(error)})"


def runs_as(compiled: Any) -> dict[str, Any]:
    """What the CPU plugin really runs: precision and kernel of its compute layers, and of every layer type."""
    layers: collections.Counter[str] = collections.Counter()
    compute: collections.Counter[str] = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind, precision = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
        layers[f"{kind} {precision}"] += 1
        if kind in COMPUTE_LAYERS:
            compute[f"{kind} {precision} {info['primitiveType'].astype(str)}"] += 1
    return {"compute": dict(compute), "layers": dict(layers)}


def ov_request_runner(compiled: Any) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], int], int]:
    """(scores of all inputs, one timed call, concurrent requests per call) for a compiled OpenVINO model. Scores
    are its ``logits`` output (a pixel-form file's second output; its first is ``probabilities``)."""
    import openvino as ov

    request = compiled.create_infer_request()
    names = [output.get_any_name() for output in compiled.outputs]
    output = names.index(SCORES) if SCORES in names else 0
    fixed = compiled.input(0).get_partial_shape().is_static
    concurrent = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    def forward(batch: np.ndarray) -> np.ndarray:
        count = len(batch)
        if fixed and count < BATCH:  # pad the short last batch; its extra rows are dropped
            batch = np.concatenate([batch, np.zeros((BATCH - count, *batch.shape[1:]), batch.dtype)])
        return np.array(request.infer({0: np.ascontiguousarray(batch)})[output][:count], dtype=np.float32)

    def scores(inputs: np.ndarray) -> np.ndarray:
        return np.concatenate([forward(inputs[start : start + BATCH]) for start in range(0, len(inputs), BATCH)])

    if concurrent <= 1:
        return scores, lambda batch: len(forward(batch)), 1
    queue = ov.AsyncInferQueue(compiled, concurrent)

    def step(batch: np.ndarray) -> int:
        for _ in range(concurrent):
            queue.start_async({0: batch})
        queue.wait_all()
        return concurrent * len(batch)

    return scores, step, concurrent


def ov_candidate(
    core: Any, read: tuple[Any, str], file: str, hint: str, precision: str | None, threads: int
) -> Candidate:
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": hint}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    candidate = Candidate(file, f"OpenVINO {hint} {precision or 'default'}", {"config": config})
    try:
        model, batch_mode = read
        compiled = core.compile_model(model, "CPU", config)
        candidate.scores, candidate.step, concurrent = ov_request_runner(compiled)
    except Exception as error:
        candidate.failed = ov_reason(error)
        return candidate
    used = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    streams = int(compiled.get_property("NUM_STREAMS"))
    if not precision:
        candidate.engine += f" ({used})"
    if streams > 1:
        candidate.engine += f" {streams} streams"
    candidate.settings.update(
        batch=batch_mode,
        inference_precision=used,
        streams=streams,
        threads_used=int(compiled.get_property("INFERENCE_NUM_THREADS")),
        concurrent_requests=concurrent,
        runs_as=runs_as(compiled),
    )
    return candidate


def file_candidates(
    core: Any, file: str, path: Path, threads: int, pixel_size: tuple[int, int] | None = None
) -> list[Candidate]:
    candidates = [ort_candidate(file, path, threads)]
    if core is None:
        return [*candidates, Candidate(file, "OpenVINO", failed="openvino is not installed (pip install '.[bench]')")]
    try:
        read = read_fixed_batch(core, path, pixel_size)  # once per file: compiling leaves the model as it is
    except Exception as error:  # the file is missing, not ONNX, or has an op or opset OpenVINO cannot convert
        return [*candidates, Candidate(file, "OpenVINO (reading the file)", failed=ov_reason(error))]
    for hint in HINTS:
        candidates.extend(ov_candidate(core, read, file, hint, precision, threads) for precision in PRECISIONS)
    return candidates


def score(candidates: list[Candidate], inputs: dict[str, np.ndarray], labels: np.ndarray) -> None:
    """Top-1 accuracy of each candidate, and its agreement with onnxruntime's top-1 on the same file (``inputs``:
    each file's own input)."""
    reference: dict[str, np.ndarray] = {}
    for candidate in candidates:
        if candidate.failed:
            continue
        try:
            scores = candidate.scores(inputs[candidate.file])
        except Exception as error:  # compiled, but a run fails (e.g. a shape the plugin rejects at run time)
            candidate.failed = ov_reason(error)
            continue
        if candidate.engine == "onnxruntime":
            reference[candidate.file] = scores  # the file's onnxruntime row comes first
        candidate.result["accuracy"] = round(100.0 * float(np.mean(scores.argmax(axis=1) == labels)), 2)
        if candidate.file in reference:
            ort_scores = reference[candidate.file]
            agree = np.mean(scores.argmax(axis=1) == ort_scores.argmax(axis=1))
            candidate.result["agree_with_ort"] = round(100.0 * float(agree), 2)
            candidate.result["max_abs_diff_vs_ort"] = float(np.max(np.abs(scores - ort_scores)))


def throughput(candidates: list[Candidate], inputs: dict[str, np.ndarray], rounds: int) -> None:
    """img/s of each working candidate at batch 256: median over interleaved rounds, after a warm-up."""
    # A full batch of each file's input, even from a tiny split.
    batches = {file: np.ascontiguousarray(values[np.arange(BATCH) % len(values)]) for file, values in inputs.items()}
    running = [candidate for candidate in candidates if not candidate.failed]
    for candidate in running:
        for _ in range(2):
            candidate.step(batches[candidate.file])  # warm-up: both runtimes allocate and pick kernels at first

    def calls(candidate: Candidate) -> int:
        return sum(candidate.step(batches[candidate.file]) for _ in range(CALLS_PER_ROUND))

    jobs = {id(candidate): (lambda c=candidate: per_second(lambda: calls(c))) for candidate in running}
    rates = interleaved_rounds(jobs, rounds).results
    median_rates = medians(rates)
    ort_rate: dict[str, float] = {}
    for candidate in running:
        rate = median_rates[id(candidate)]
        if candidate.engine == "onnxruntime":
            ort_rate[candidate.file] = rate
        candidate.result.update(img_per_s=round(rate, 1), rounds=[round(value, 1) for value in rates[id(candidate)]])
        if candidate.engine != "onnxruntime" and ort_rate.get(candidate.file):
            candidate.result["vs_ort"] = round(rate / ort_rate[candidate.file], 3)


def compute_summary(candidate: Candidate) -> str:
    compute = (candidate.settings.get("runs_as") or {}).get("compute") or {}
    precisions = collections.Counter()
    for name, count in compute.items():
        kind, precision, _ = name.split(" ", 2)
        precisions[f"{kind.replace('Convolution', 'conv').replace('FullyConnected', 'fc')} {precision}"] += count
    return ", ".join(f"{name} x{count}" for name, count in precisions.items())


def print_table(record: dict[str, Any]) -> None:
    cpu = record["cpu"]
    print(f"CPU: {cpu['model']} ({cpu['machine']}) flags {cpu['flags']}")
    print(
        f"{record['images']} validation images; batch {BATCH}; {record['threads']} thread(s); openvino "
        f"{record['openvino']}, onnxruntime {record['onnxruntime']}"
    )
    width = max([len(row["file"]) for row in record["rows"]] + [4])
    engine_width = max(len(row["engine"]) for row in record["rows"]) if record["rows"] else 6
    heading = f"{'acc %':>7} {'agree %':>8} {'max|d|':>8} {'img/s':>9} {'vs ORT':>7}  runs as"
    print(f"{'file':{width}} {'engine / settings':{engine_width}} {heading}")
    for row in record["rows"]:
        if row["failed"]:
            print(f"{row['file']:{width}} {row['engine']:{engine_width}} FAILED: {row['failed']}")
            continue
        result = row["result"]
        baseline = "1.00x" if row["engine"] == "onnxruntime" else "-"
        ratio = f"{result['vs_ort']:.2f}x" if "vs_ort" in result else baseline
        agree = f"{result['agree_with_ort']:.2f}" if "agree_with_ort" in result else "-"
        diff = f"{result['max_abs_diff_vs_ort']:.1e}" if "max_abs_diff_vs_ort" in result else "-"
        print(
            f"{row['file']:{width}} {row['engine']:{engine_width}} {result['accuracy']:7.2f} {agree:>8} {diff:>8} "
            f"{result['img_per_s']:9.1f} {ratio:>7}  {row['runs_as']}"
        )


def file_contract(path: Path) -> Contract | None:
    """The contract in an ONNX file's metadata; None when it cannot be read (the file's rows then fail on their own)."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return Contract.from_json(session.get_modelmeta().custom_metadata_map[CONTRACT_METADATA_KEY])
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------------------------
# A pixel-form file on inputs its graph resizes.


@dataclass
class ResizedSet:
    name: str
    pixels: np.ndarray  # uint8 (n, H, W, 3) as fed to the file
    pillow: np.ndarray  # uint8 (n, h, w, 3): Pillow's bilinear resize of each to the contract size (the runtime's)


def resized_sets(val_images: np.ndarray, contract: Contract, size: tuple[int, int], photos: Path) -> list[ResizedSet]:
    """The validation images upscaled by Pillow to ``size`` (width, height), and each photo at its natural size."""
    from PIL import Image

    from cifar_edge.runtime.images import open_image_rgb
    from cifar_edge.runtime.preprocess import resize_to_contract

    def pillow(image: Any) -> np.ndarray:
        return np.asarray(resize_to_contract(Image.fromarray(np.asarray(image)), contract))

    upscaled = [Image.fromarray(image).resize(size, Image.Resampling.BILINEAR) for image in val_images]
    sets = [
        ResizedSet(
            f"{len(upscaled)} validation images upscaled to {size[0]}x{size[1]}",
            np.stack([np.asarray(image) for image in upscaled]),
            np.stack([pillow(image) for image in upscaled]),
        )
    ]
    for photo in sorted(photos.glob("*")) if photos.is_dir() else []:
        image = open_image_rgb(photo, contract.alpha_background)
        name = f"{photo.name} ({image.width}x{image.height})"
        sets.append(ResizedSet(name, np.asarray(image)[np.newaxis], pillow(image)[np.newaxis]))
    return sets


def resize_stage(path: Path, folder: Path) -> Path:
    """The file's graph cut after its Resize: uint8 pixels in, the resized uint8 pixels out."""
    import onnx

    model = onnx.load(str(path))
    pixels = model.graph.input[0].name
    node = next(node for node in model.graph.node if node.op_type == "Resize" and node.input[0] == pixels)
    stage = onnx.utils.Extractor(model).extract_model([pixels], [node.output[0]])
    target = folder / f"{path.stem}.resize.onnx"
    onnx.save(stage, str(target))
    return target


def ov_runner(core: Any, path: Path, shape: tuple[int, ...], config: dict[str, Any]) -> Callable[[np.ndarray], Any]:
    """All inputs (n, H, W, 3) -> the model's chosen output, in fixed-shape chunks (the last one padded)."""
    model = core.read_model(str(path))
    model.reshape(list(shape))
    compiled = core.compile_model(model, "CPU", config)
    names = [output.get_any_name() for output in compiled.outputs]
    output = names.index(SCORES) if SCORES in names else 0
    request = compiled.create_infer_request()

    def run(inputs: np.ndarray) -> np.ndarray:
        chunks = []
        for start in range(0, len(inputs), shape[0]):
            chunk = inputs[start : start + shape[0]]
            padded = np.concatenate([chunk, np.zeros((shape[0] - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            chunks.append(np.array(request.infer({0: padded})[output][: len(chunk)]))
        return np.concatenate(chunks)

    return run


def ort_runner(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    output = SCORES if SCORES in names else names[0]

    def run(inputs: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                session.run([output], {session.get_inputs()[0].name: inputs[i : i + BATCH]})[0]
                for i in range(0, len(inputs), BATCH)
            ]
        )

    return run


def lsb(resized: np.ndarray, pillow: np.ndarray) -> dict[str, Any]:
    difference = np.abs(resized.astype(np.int16) - pillow.astype(np.int16))
    return {
        "max_lsb": int(difference.max()),
        "mean_lsb": round(float(difference.mean()), 4),
        "values_differing_percent": round(100.0 * float(np.mean(difference > 0)), 3),
    }


def resized_inputs(core: Any, path: Path, sets: list[ResizedSet], threads: int) -> dict[str, Any]:
    """onnxruntime and OpenVINO on inputs the graph resizes: agreement, and each runtime's Resize against Pillow."""
    from cifar_edge.runtime.predictions import softmax

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ov_resize_") as folder:
        stage = resize_stage(path, Path(folder))
        ort_model, ort_stage = ort_runner(path, threads), ort_runner(stage, threads)
        for item in sets:
            shape = (min(BATCH, len(item.pixels)), *item.pixels.shape[1:])
            reference = softmax(ort_model(item.pixels))
            row: dict[str, Any] = {"onnxruntime resize vs Pillow": lsb(ort_stage(item.pixels), item.pillow)}
            for precision in PRECISIONS:
                config = {
                    "INFERENCE_NUM_THREADS": threads,
                    **({"INFERENCE_PRECISION_HINT": precision} if precision else {}),
                }
                name = f"OpenVINO {precision or 'default'}"
                try:
                    if core is None:
                        raise RuntimeError("openvino is not installed (pip install '.[bench]')")
                    probabilities = softmax(ov_runner(core, path, shape, config)(item.pixels))
                    if not precision:
                        row["OpenVINO resize vs Pillow"] = lsb(
                            ov_runner(core, stage, shape, config)(item.pixels), item.pillow
                        )
                except Exception as error:
                    row[name] = {"failed": ov_reason(error)}
                    continue
                row[name] = {
                    "agree_with_ort_percent": round(
                        100.0 * float(np.mean(probabilities.argmax(1) == reference.argmax(1))), 2
                    ),
                    "max_prob_diff_vs_ort": float(np.abs(probabilities - reference).max()),
                }
            results[item.name] = row
    return results


def print_resized(record: dict[str, Any]) -> None:
    for file, sets in record.get("resized_inputs", {}).items():
        print(f"\n{file}, pixel form, on inputs its graph resizes (agreement with onnxruntime on the same file):")
        for name, row in sets.items():
            print(f"  {name}:")
            for key, value in row.items():
                print(f"    {key}: {', '.join(f'{k} {v}' for k, v in value.items())}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--files", default="model.onnx,model.int8.onnx", help="comma-separated ONNX files")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--resized", default="48x64", help="WIDTHxHEIGHT the validation images are upscaled to")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="photos a pixel-form file gets at natural size")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    run = load_run(args.run_dir)
    images = run_images(run.record, run.contract)
    if images is None:
        print("openvino_compare: the run has no data record to rebuild its validation images from", file=sys.stderr)
        return 2
    by_form = {"pixels": images.val.images, "float": normalize_batch(images.val.images, run.contract)}
    labels = images.val.labels
    try:
        import openvino as ov

        core, ov_version = ov.Core(), ov.__version__
    except ImportError:
        core, ov_version = None, None
    import onnxruntime

    candidates: list[Candidate] = []
    inputs: dict[str, np.ndarray] = {}
    resized: dict[str, Any] = {}
    for file in [name.strip() for name in args.files.split(",") if name.strip()]:
        path = Path(file) if Path(file).is_absolute() else args.run_dir / file
        contract = file_contract(path)
        pixel_size = tuple(contract.image_size) if contract is not None and contract.takes_pixels else None
        inputs[file] = by_form["pixels" if pixel_size else "float"]
        candidates.extend(file_candidates(core, file, path, args.threads, pixel_size))
        if contract is not None and pixel_size:
            width, height = (int(side) for side in args.resized.lower().split("x"))
            sets = resized_sets(images.val.images, contract, (width, height), args.photos)
            resized[file] = resized_inputs(core, path, sets, args.threads)
    score(candidates, inputs, labels)
    throughput(candidates, inputs, args.rounds)
    for candidate in candidates:
        candidate.close()
    rows = [
        {"file": c.file, "engine": c.engine, "failed": c.failed, "settings": c.settings, "result": c.result}
        for c in candidates
    ]
    for row, candidate in zip(rows, candidates, strict=True):
        row["runs_as"] = compute_summary(candidate)
    record = {
        "cpu": cpu_features(),
        "run_dir": str(args.run_dir),
        "images": len(labels),
        "batch": BATCH,
        "threads": args.threads,
        "rounds": args.rounds,
        "openvino": ov_version,
        "onnxruntime": onnxruntime.__version__,
        "rows": rows,
        "input_forms": {file: "pixels" if values.dtype == np.uint8 else "float" for file, values in inputs.items()},
        "resized_inputs": resized,
    }
    print_table(record)
    print_resized(record)
    save_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())

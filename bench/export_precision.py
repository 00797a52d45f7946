"""ONNX precisions on this CPU: fp32 (baseline), fp16 and static int8 of one run, measured in the same process.

    .venv/bin/python bench/export_precision.py [RUN_DIR] [--data PATH] [--batch-size 256] [--seconds 5]
        [--threads N] [--calibration 300]

RUN_DIR defaults to runs/latest. The three artifacts are exported (with the parity gate) into a temporary folder,
then each runs through onnxruntime's CPU provider on the same real validation images (or random pixels when the
run has none) at the same batch size and thread count, in interleaved rounds (median reported) so that load from
other processes hits all precisions alike. Prints file size, images/s and the ratio to fp32, and the
parity figures the gate measured (accuracy and top-1 agreement on the real images).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cifar_edge.export import ExportConfig, ExportError, export_run
from cifar_edge.export.benchmark.timing import interleaved_rounds, medians
from cifar_edge.export.gate.data import gather_export_data
from cifar_edge.export.run_data import resolve_run_dir
from cifar_edge.runtime.preprocess import normalize_batch
from cifar_edge.train.run_folder import load_run

PRECISIONS = (("fp32", None), ("fp16", None), ("fp32", "int8"))


def open_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def images_per_second(session: ort.InferenceSession, batches: list[np.ndarray], seconds: float) -> float:
    name = session.get_inputs()[0].name
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for batch in batches:
            session.run(None, {name: batch})
            done += len(batch)
    return done / (time.perf_counter() - started)


def interleaved_speeds(sessions: list[ort.InferenceSession], batches: list[np.ndarray], seconds: float) -> list[float]:
    """Median images/s per session over rounds that take turns, so drifting machine load hits all of them alike."""
    for session in sessions:  # warm-up: first-run allocations are not throughput
        session.run(None, {session.get_inputs()[0].name: batches[0]})
    rounds = 5
    jobs = {
        index: (lambda session=session: images_per_second(session, batches, seconds / rounds))
        for index, session in enumerate(sessions)
    }
    speeds = medians(interleaved_rounds(jobs, rounds).results)
    return [speeds[index] for index in range(len(sessions))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default=None)
    parser.add_argument("--data", type=Path, default=None, help="labelled image folder, if the run has no data record")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="measuring time per precision (in 5 interleaved rounds)"
    )
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (same for all)")
    parser.add_argument("--calibration", type=int, default=300)
    args = parser.parse_args()
    try:
        run_dir = resolve_run_dir(args.run_dir)
        run = load_run(run_dir)
    except (ExportError, ValueError) as error:
        print(f"export_precision: {error}", file=sys.stderr)
        return 2
    data = gather_export_data(run.record, run.contract, data_path=args.data, verify_images=2048, calibration_images=0)
    if data.verification is not None and len(data.verification) >= args.batch_size:
        inputs = normalize_batch(data.verification.images, run.contract)
    else:
        height, width = run.contract.image_size
        pixels = np.random.default_rng(0).integers(0, 256, size=(2048, height, width, 3), dtype=np.uint8)
        inputs = normalize_batch(pixels, run.contract)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cifar-edge-bench-export-") as folder:
        for dtype, quantize in PRECISIONS:
            # Precision against precision on the same normalised inputs: the float form (the pixel form adds only
            # its exact prefix, measured by bench/portable.py).
            config = ExportConfig(
                dtype=dtype,
                quantize=quantize,
                output=Path(folder),
                data=args.data,
                calibration_images=args.calibration,
                input_form="float",
            )
            try:
                result = export_run(run_dir, config)
            except ExportError as error:
                print(f"export_precision: {error}", file=sys.stderr)
                return 2
            (artifact,) = result.artifacts
            if not artifact.written:
                print(f"export_precision: {artifact.path.name} not written: {artifact.error or 'gate failed'}")
                return 1
            real = next((c for b in artifact.report.backends for c in b.comparisons if c.name == "real images"), None)
            rows.append([artifact.precision, artifact.size_bytes, open_session(artifact.path, args.threads), real])
        batches = [
            inputs[start : start + args.batch_size]
            for start in range(0, len(inputs) - args.batch_size + 1, args.batch_size)
        ]
        speeds = interleaved_speeds([row[2] for row in rows], batches, args.seconds)
        for row, speed in zip(rows, speeds, strict=True):
            row[2] = speed
    baseline = rows[0][2]
    print(f"run: {run_dir}  batch {args.batch_size}, {args.threads} intra-op thread(s), CPU provider")
    print(f"{'precision':<10}{'size':>12}{'img/s':>10}{'vs fp32':>9}{'acc torch':>11}{'acc onnx':>10}{'agree':>9}")
    for precision, size, speed, real in rows:
        accuracy = (
            f"{real.reference_accuracy:>10.2f}%{real.artifact_accuracy:>9.2f}%{100 * real.top1_agreement:>8.2f}%"
            if real is not None and real.reference_accuracy is not None
            else f"{'-':>11}{'-':>10}{'-':>9}"
        )
        print(f"{precision:<10}{size / 1024:>9.1f} KiB{speed:>10.0f}{speed / baseline:>8.2f}x{accuracy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""int8 against fp32 on this CPU, in one run: accuracy on the run's validation split, img/s, what really runs.

Exports the run (cifar-export's ``export_run``, parity gate on) as fp32 and as int8 with 8-bit and 7-bit weights
(GELU on int8 kernels) and with 8-bit weights and GELU in float, at the TTA settings asked for. Then, per file:
top-1 accuracy on every validation image through the runtime's engine, img/s at batch 256 on one onnxruntime
thread (median of interleaved rounds, so machine load hits every file alike), and the node types onnxruntime runs
after its optimizations (integer kernels vs float Conv and Gelu). Prints the int8/fp32 speed ratio and the
accuracy difference, and writes a JSON record with the CPU it ran on.

    .venv/bin/python bench/int8.py [RUN_DIR] [--tta none,flip_shift] [--rounds 5] [--out bench/results/int8.json]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from cifar_edge.export import ExportConfig, export_run
from cifar_edge.export.benchmark.timing import interleaved_rounds, medians, per_second, save_record
from cifar_edge.export.engines import Engine, onnx_engine
from cifar_edge.export.run_data import resolve_run_dir, run_images
from cifar_edge.runtime.hardware import cpu_features
from cifar_edge.runtime.preprocess import normalize_batch
from cifar_edge.train.run_folder import load_run

VARIANTS = {"fp32": {}, "int8 8-bit": {"quantize": "int8", "int8_weight_bits": "8"}}
VARIANTS["int8 7-bit"] = {"quantize": "int8", "int8_weight_bits": "7"}
VARIANTS["int8 8-bit float GELU"] = {"quantize": "int8", "int8_weight_bits": "8", "int8_gelu": "float"}
BATCH = 256


def runs_as(path: Path, work: Path) -> dict[str, int]:
    """Node types of the graph onnxruntime runs (extended optimizations: portable across CPUs)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(work / f"{path.stem}.optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(collections.Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node))


def throughput(engines: dict[str, Engine], inputs: np.ndarray, rounds: int) -> dict[str, float]:
    batch = inputs[:BATCH]
    for engine in engines.values():
        engine.forward(batch)  # warm-up: onnxruntime allocates and tunes on the first run

    def four_calls(engine: Engine) -> int:
        for _ in range(4):
            engine.forward(batch)
        return 4 * len(batch)

    jobs = {name: (lambda engine=engine: per_second(lambda: four_calls(engine))) for name, engine in engines.items()}
    return medians(interleaved_rounds(jobs, rounds).results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default=None)
    parser.add_argument("--tta", default="none", help="comma-separated: none, flip, flip_shift")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    run_dir = resolve_run_dir(args.run_dir)
    run = load_run(run_dir)
    images = run_images(run.record, run.contract)
    if images is None:
        print("int8: the run has no data record to rebuild its validation images from", file=sys.stderr)
        return 2
    inputs, labels = normalize_batch(images.val.images, run.contract), images.val.labels
    record = {"cpu": cpu_features(), "run_dir": str(run_dir), "images": len(labels), "batch": BATCH, "rows": []}
    with tempfile.TemporaryDirectory(prefix="cifar-edge-int8-") as scratch:
        work = Path(scratch)
        for tta in args.tta.split(","):
            engines, rows = {}, {}
            for name, options in VARIANTS.items():
                target = work / f"{tta}-{name.replace(' ', '-')}.onnx"
                result = export_run(run_dir, ExportConfig(output=target, tta=tta, **options))
                if not result.ok:
                    print(f"int8: {name} ({tta}) was not written: {result.to_dict()}", file=sys.stderr)
                    return 1
                engine = onnx_engine(target, "cpu", intra_op_threads=1)
                accuracy = 100.0 * float(np.mean(engine.run(inputs, BATCH).argmax(axis=1) == labels))
                engines[name] = engine
                rows[name] = {"tta": tta, "variant": name, "accuracy": round(accuracy, 2), "ops": runs_as(target, work)}
            for name, rate in throughput(engines, inputs, args.rounds).items():
                rows[name]["img_per_s"] = round(rate, 1)
                rows[name]["speed_vs_fp32"] = round(rate / rows["fp32"].get("img_per_s", rate), 3)
                rows[name]["accuracy_vs_fp32"] = round(rows[name]["accuracy"] - rows["fp32"]["accuracy"], 2)
            record["rows"].extend(rows.values())
    print(f"CPU: {record['cpu']['model']} flags {record['cpu']['flags']}; {len(labels)} validation images")
    for row in record["rows"]:
        integer = sum(count for op, count in row["ops"].items() if op.startswith(("QLinear", "QGemm", "ConvInteger")))
        print(
            f"tta {row['tta']:10} {row['variant']:21} {row['accuracy']:6.2f}% ({row['accuracy_vs_fp32']:+.2f}) "
            f"{row['img_per_s']:8.1f} img/s = {row['speed_vs_fp32']:.2f}x fp32; integer kernels {integer}, "
            f"float Conv {row['ops'].get('Conv', 0)}, float Gelu {row['ops'].get('Gelu', 0)}"
        )
    save_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the torch-free runtime against the tutorial's way, in one run, on this machine.

1. Cold start: wall time of ``cifar-infer one.png`` (a fresh process: imports, session, decode, forward, print)
   against a script doing the tutorial's way on the same image (import torch + torchvision, build the network,
   ``torch.load`` the weights, ``Resize > ToTensor > Normalize``, forward). Target: >= 5x faster.
2. Throughput over a folder of CIFAR-10 JPEGs with the CPU provider: end to end (decode + resize + normalise +
   session + softmax, through the Classifier API and through the CLI) against model-only (``Classifier.forward`` on
   pre-decoded batches) at the same batch size and session settings. Target: end to end >= 70% of model-only.
   Also: the thread settings side by side, and cifar-infer on every core against the same pinned to one core.

The model: the run folder ``--run-dir`` (a cifar-train run) or, by default, a randomly initialised network of
``--arch`` (speed does not depend on the weights), exported to ONNX by cifar-export's ``export_run``. This is a
bench script: it may import torch; the runtime under test does not.

    .venv/bin/python bench/infer.py [--arch airnet|seed] [--images 10000] [--batch-size 64] [--run-dir runs/latest]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cifar_edge.export.benchmark.timing import interleaved_rounds, medians, seconds

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CIFAR_TRAIN = SHARED_DATA / "cifar10-jpeg" / "train"
CAT_PHOTO = SHARED_DATA / "photos" / "cat.png"
CLI = Path(sys.executable).parent / "cifar-infer"

TUTORIAL_SCRIPT = textwrap.dedent(
    '''
    """The tutorial's way: import torch, build the network, load the weights, preprocess, forward."""
    import json
    import sys

    import torch
    import torchvision.transforms as transforms
    from PIL import Image
    from torch import nn

    image_path, weights_path, spec_path = sys.argv[1:4]
    spec = json.load(open(spec_path))
    if spec["arch"] == "seed":  # the tutorial network, defined inline as the tutorial does
        net = nn.Sequential(
            nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 5, padding=2), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(1024, 64), nn.Linear(64, len(spec["classes"])),
        )
    else:
        from cifar_edge.train.models import build_model
        net = build_model(spec["arch"], **spec["kwargs"])
    net.load_state_dict(torch.load(weights_path, weights_only=True))
    net.eval()
    transform = transforms.Compose([
        transforms.Resize(tuple(spec["image_size"])),
        transforms.ToTensor(),
        transforms.Normalize(spec["mean"], spec["std"]),
    ])
    batch = transform(Image.open(image_path).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        logits = net(batch)
    print(spec["classes"][int(logits.argmax(1))])
    '''
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="airnet", choices=["airnet", "seed"])
    parser.add_argument("--run-dir", type=Path, help="use this cifar-train run's weights instead of random ones")
    parser.add_argument("--images", type=int, default=10000, help="JPEGs in the throughput folder")
    parser.add_argument("--batch-size", type=int, default=64, help="the same for end to end and model-only")
    parser.add_argument("--cold-repeats", type=int, default=5, help="timed cold starts per side (median)")
    parser.add_argument("--repeats", type=int, default=3, help="timed throughput passes (best)")
    args = parser.parse_args()
    for needed in (CIFAR_TRAIN, CAT_PHOTO, CLI):
        if not needed.exists():
            sys.exit(f"missing {needed}")

    with tempfile.TemporaryDirectory(prefix="bench_infer_") as temporary:
        work = Path(temporary)
        model_path, weights_path, spec = prepare_model(args, work)
        print(f"model: {spec['arch']} {model_path.stat().st_size:,} bytes ONNX ({spec['source']})")
        load = os.getloadavg()[0]
        print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} before; python {sys.version.split()[0]}")
        cold = cold_start(model_path, weights_path, spec, work, args.cold_repeats)
        folder = jpeg_folder(work / "jpegs", args.images)
        throughput_report = throughput(model_path, folder, args.batch_size, args.repeats)
    print(f"load average {os.getloadavg()[0]:.1f} after (other processes share these CPUs: compare ratios, not rates)")
    print()
    print(f"cold start, one image ({CAT_PHOTO.name}, {args.cold_repeats} runs each, median wall time):")
    print(f"  tutorial way (torch)        {cold['torch']:.3f} s")
    print(f"  cifar-infer (onnxruntime)   {cold['ours']:.3f} s")
    print(f"  ratio                       {cold['torch'] / cold['ours']:.1f}x faster   (target >= 5x)")
    print()
    print(f"throughput, {args.images:,} CIFAR-10 JPEGs, CPU provider, batch {args.batch_size}, best of {args.repeats}:")
    for line in throughput_report:
        print("  " + line)


def prepare_model(args: argparse.Namespace, work: Path) -> tuple[Path, Path, dict]:
    """A run folder (given, or random weights written here) exported with cifar-export's own export_run."""
    import torch

    from cifar_edge.export import ExportConfig, export_run
    from cifar_edge.runtime.contract import Contract, unnormalized_contract
    from cifar_edge.train.models import build_model
    from cifar_edge.train.run_folder import load_run, save_model_files

    if args.run_dir:
        run_dir, source = args.run_dir, f"weights of {args.run_dir}"
    else:
        torch.manual_seed(0)
        run_dir, source = work / "run", "random weights"
        contract = unnormalized_contract() if args.arch == "seed" else Contract()
        record = {"architecture": {"name": args.arch, "kwargs": {}}, "contract": contract.to_dict(), "metrics": {}}
        save_model_files(run_dir, build_model(args.arch), record)
    loaded = load_run(run_dir)
    weights_path = work / "tutorial_weights.pt"
    torch.save(loaded.model.state_dict(), weights_path)  # a state dict, as the tutorial saves it

    model_path = work / "model.onnx"
    # The parity gate runs on random probes (verify_images=0): this is a speed bench, cifar-export's tests gate.
    with contextlib.redirect_stdout(io.StringIO()):
        result = export_run(run_dir, ExportConfig(output=model_path, verify_images=0))
    if result.exit_code != 0 or not model_path.is_file():
        sys.exit(f"cifar-export failed: {result}")
    architecture, contract = loaded.record["architecture"], loaded.contract
    spec = {
        "arch": architecture["name"],
        "kwargs": architecture.get("kwargs", {}),
        "classes": list(contract.class_names),
        "image_size": list(contract.image_size),
        "mean": list(contract.mean),
        "std": list(contract.std),
        "source": source,
    }
    return model_path, weights_path, spec


def cold_start(model_path: Path, weights_path: Path, spec: dict, work: Path, repeats: int) -> dict[str, float]:
    script = work / "tutorial_way.py"
    script.write_text(TUTORIAL_SCRIPT)
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    ours = [str(CLI), str(CAT_PHOTO), "--model", str(model_path), "--provider", "cpu", "--quiet"]
    torch_way = [sys.executable, str(script), str(CAT_PHOTO), str(weights_path), str(spec_path)]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # One untimed run each warms the page cache, as a second invocation on a device would find it.
    labels = {}
    for name, command in (("ours", ours), ("torch", torch_way)):
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        labels[name] = done.stdout
    ours_label = labels["ours"].splitlines()[2].split("│")[1].strip()
    assert ours_label == labels["torch"].strip(), f"labels differ: {ours_label} vs {labels['torch'].strip()}"

    def one_run(command: list[str]) -> float:
        return seconds(lambda: subprocess.run(command, capture_output=True, env=env, check=True))

    sides = {"ours": ours, "torch": torch_way}
    jobs = {name: (lambda command=command: one_run(command)) for name, command in sides.items()}
    return medians(interleaved_rounds(jobs, repeats).results)  # alternating, so background load hits both alike


def wall_and_cpu(work: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of one call of ``work``."""
    cpu_started = time.process_time()
    wall = seconds(work)
    return wall, time.process_time() - cpu_started


def jpeg_folder(folder: Path, count: int) -> Path:
    """``count`` JPEGs spread over the classes, linked into a tree: the default run's validation split (seed 0)
    first, then (past its 10%) training images."""
    from cifar_edge.train import TrainConfig
    from cifar_edge.train.data.folder import find_image_folder_files
    from cifar_edge.train.data.split import stratified_split

    found = find_image_folder_files(CIFAR_TRAIN.parent)
    classes = len(found.class_names)
    train, val = stratified_split(found.train_labels, classes, TrainConfig.val_fraction, TrainConfig.seed)
    candidates = np.concatenate([val, train])
    per_class = -(-count // classes)
    taken = {index: 0 for index in range(classes)}
    for index in candidates[np.argsort(found.train_labels[candidates], kind="stable")]:
        label = int(found.train_labels[index])
        if taken[label] == per_class or sum(taken.values()) == count:
            continue
        source = Path(found.train_files[index])
        target = folder / found.class_names[label] / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)
        taken[label] += 1
    return folder


SETTINGS = {  # name -> Classifier keyword arguments; the defaults first
    "defaults": {},
    "1 stream x 1 thread": {"intra_op_threads": 1},
    "1 stream x 2 threads": {"intra_op_threads": 2},
}


def throughput(model_path: Path, folder: Path, batch_size: int, repeats: int) -> list[str]:
    from cifar_edge.runtime import Classifier
    from cifar_edge.runtime.image_files import expand_inputs

    paths = [p for p in expand_inputs([str(folder)]) if isinstance(p, str)]
    count = len(paths)
    results: dict[str, dict[str, float]] = {}
    for setting, options in SETTINGS.items():
        with Classifier(model_path, "cpu", batch_size=batch_size, **options) as classifier:
            pixels = np.stack([classifier.prepare(p) for p in paths])  # decoded once, untimed, for model-only
            batches = [pixels[i : i + batch_size] for i in range(0, count, batch_size)]
            batches = [classifier.model_input.from_pixels(batch) for batch in batches]  # the file's own input form

            def model_only(classifier=classifier, batches=batches) -> None:
                for batch in batches:
                    classifier.forward(batch)

            def end_to_end(classifier=classifier) -> None:
                assert sum(1 for _ in classifier.predict_iter(paths)) == count

            # Alternate the two, so that load from other processes on a shared machine hits both alike; one warm-up
            # call each first (arena allocation, kernel selection).
            works = {"model": model_only, "api": end_to_end}
            jobs = {key: (lambda work=work: wall_and_cpu(work)) for key, work in works.items()}
            runs = interleaved_rounds(jobs, repeats, warmup=1).results
            timings = {key: [wall for wall, _ in measured] for key, measured in runs.items()}
            cpu_seconds = {key: sum(cpu for _, cpu in measured) for key, measured in runs.items()}
            setting_name = f"{setting} ({classifier.streams} x {classifier.intra_op_threads})"
        results[setting_name] = {key: count / min(values) for key, values in timings.items()}
        # CPU time per image, all threads of this process: what each image costs whatever the machine's load.
        results[setting_name].update(
            {f"{key}_cpu_us": 1e6 * cpu_seconds[key] / (count * repeats) for key in cpu_seconds}
        )

    plain_rate = plain_loop_rate(model_path, paths, batch_size, repeats)
    cli = cli_rates(folder, model_path, batch_size, repeats, count)
    lines = []
    best_model_only = max(r["model"] for r in results.values())
    for setting_name, rates in results.items():
        lines.append(
            f"{setting_name:32} model-only {rates['model']:>8,.0f} img/s   end to end (API) "
            f"{rates['api']:>8,.0f} img/s   ratio {rates['api'] / rates['model']:.0%}"
        )
    chosen = next(iter(results.values()))
    lines.append(
        f"CPU time per image (all threads), default settings: model-only {chosen['model_cpu_us']:.0f} us, "
        f"end to end {chosen['api_cpu_us']:.0f} us (decode + resize + normalise + pipeline: "
        f"{chosen['api_cpu_us'] - chosen['model_cpu_us']:.0f} us)"
    )
    lines.append(
        f"cifar-infer --json (a fresh process, start-up included): {cli['all']:,.0f} img/s = "
        f"{cli['all'] / chosen['model']:.0%} of model-only; pinned to one core (taskset): {cli['one']:,.0f} img/s, "
        f"so two cores give {cli['all'] / cli['one']:.2f}x one (target >= 1.8x)"
    )
    lines.append(
        f"cifar-infer --json over the {count:,} JPEGs: {cli['all']:,.0f} img/s = {cli['all'] / plain_rate:.2f}x a "
        f"plain single-thread fp32 onnxruntime loop over the same images already decoded ({plain_rate:,.0f} img/s); "
        "target >= 2x"
    )
    lines.append(
        f"end to end (API, default settings) = {chosen['api'] / chosen['model']:.0%} of model-only at the same "
        f"settings, {chosen['api'] / best_model_only:.0%} of the best model-only rate ({best_model_only:,.0f} img/s);"
        " target >= 70%"
    )
    return lines


def cli_rates(folder: Path, model_path: Path, batch_size: int, repeats: int, count: int) -> dict[str, float]:
    """Best img/s of ``cifar-infer --json`` over the folder: on every core ("all") and pinned to one ("one")."""
    command = [str(CLI), str(folder), "--model", str(model_path), "--provider", "cpu", "--json", "--quiet"]
    command += ["--batch-size", str(batch_size)]
    variants = {"all": command, "one": ["taskset", "-c", str(min(os.sched_getaffinity(0))), *command]}

    def one_run(variant: list[str]) -> float:
        started = time.perf_counter()
        done = subprocess.run(variant, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        assert done.returncode == 0 and done.stdout.count("\n") == count, done.stderr[-500:]
        return wall

    jobs = {name: (lambda variant=variant: one_run(variant)) for name, variant in variants.items()}
    walls = interleaved_rounds(jobs, repeats).results  # alternating, so background load hits both alike
    return {name: count / min(values) for name, values in walls.items()}


def plain_loop_rate(model_path: Path, paths: list[str], batch_size: int, repeats: int) -> float:
    """img/s of what a user writes first: onnxruntime's defaults, one thread, a loop over pre-decoded batches."""
    import onnxruntime as ort

    from cifar_edge.runtime import Classifier

    with Classifier(model_path, "cpu") as reader:  # decoding only: the loop below gets the images for free
        pixels = np.stack([reader.prepare(p) for p in paths])
        batches = [reader.model_input.from_pixels(pixels[i : i + batch_size]) for i in range(0, len(paths), batch_size)]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: batches[0]})
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in batches:
            session.run(None, {name: batch})
        best = min(best, time.perf_counter() - started)
    return len(paths) / best


if __name__ == "__main__":
    main()

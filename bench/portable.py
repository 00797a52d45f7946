"""Issue 32's measures of the pixel input form, on one run, in one process (ratios against baselines measured in
the same run, on this machine):

a. Accuracy: the run exported in both input forms (fp32 and int8: four files, each behind the parity gate), each
   read by the runtime's ``Classifier`` on the run's validation files. Target: pixel - float within 0.05 point.
b. Speed, fp32, pixel against float form of the same weights: ``cifar-infer --json`` over the validation JPEGs, a
   fresh process each time, end to end (interleaved rounds, median wall time; target pixel >= float); and
   model-only img/s, ``Classifier.forward`` on pre-prepared batches of 256 in each form's own input (uint8 NHWC
   pixels, normalised float32 NCHW; interleaved rounds, median; target within 3%).
c. The JS clients (examples/js_clients.py drives them, as the tests do) against ``cifar-infer --json`` on the same
   files: ``--client-images`` validation JPEGs, the photos at their natural size, and ``--png-images`` of the
   JPEGs decoded and saved as PNG, at their natural size and upscaled to ``--png-size``: top-1 agreement and
   max |probability difference| per group, for Node and the browser, fp32 and int8. Browser img/s at batch 1
   (fetch, decode, composite, run, show; one wasm thread) against plain onnxruntime in Python at batch 1 on one
   thread over the same pixels, interleaved.

    .venv/bin/python bench/portable.py --run-dir runs/latest [--out bench/results/portable.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cifar_edge.export.benchmark.timing import interleaved_rounds, medians, per_second, save_record, seconds
from cifar_edge.runtime.hardware import cpu_features

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "examples"))
from js_clients import (  # noqa: E402
    BrowserPage,
    cifar_infer_command,
    compare,
    model_class_names,
    run_cifar_infer,
    run_node,
)

PHOTOS = REPO_ROOT.parent / "shared" / "data" / "photos"
FORMS = ("pixels", "float")
PRECISIONS = ("fp32", "int8")
BATCH = 256


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a cifar-train run folder (e.g. runs/latest)")
    parser.add_argument("--out", type=Path, default=None, help="write the record here as JSON")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of each timing")
    parser.add_argument("--client-images", type=int, default=1000, help="validation JPEGs the JS clients classify")
    parser.add_argument("--png-images", type=int, default=200, help="of those, converted to PNG (two sizes)")
    parser.add_argument("--png-size", default="45x70", help="WIDTHxHEIGHT of the upscaled PNGs")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of photos, classified at natural size")
    parser.add_argument("--limit", type=int, default=None, help="validation files (default: all; for a quick try)")
    return parser.parse_args()


def validation_files(run_dir: Path, limit: int | None) -> tuple[list[Path], np.ndarray, Any]:
    """The run's validation files (rebuilt from run.json's data spec) and their labels in the model's class order."""
    from cifar_edge.train.data.folder import find_image_folder_files
    from cifar_edge.train.data.split import stratified_split
    from cifar_edge.train.run_folder import load_run

    run = load_run(run_dir)
    spec = run.record["data"]["spec"]
    files = find_image_folder_files(spec["data"])
    _, val_index = stratified_split(files.train_labels, len(files.class_names), spec["val_fraction"], spec["seed"])
    to_model = np.asarray([run.contract.class_names.index(name) for name in files.class_names])
    if limit is not None:
        val_index = val_index[np.linspace(0, len(val_index) - 1, limit).astype(int)]
    paths = [Path(files.train_files[index]) for index in val_index]
    return paths, to_model[np.asarray(files.train_labels)[val_index]], run.contract


def export_both_forms(run_dir: Path, folder: Path) -> dict[tuple[str, str], Path]:
    """{(form, precision): file}, each written by export_run behind the parity gate (cifar-export's defaults)."""
    from cifar_edge.export import ExportConfig, export_run

    paths = {}
    for form in FORMS:
        for precision in PRECISIONS:
            path = folder / f"model.{form}.{precision}.onnx"
            config = ExportConfig(output=path, input_form=form, quantize="int8" if precision == "int8" else None)
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                result = export_run(run_dir, config)
            if result.exit_code != 0 or not path.is_file():
                sys.exit(f"export of the {form} form, {precision}, failed: {result}")
            print(f"  exported {path.name} ({path.stat().st_size:,} bytes, {time.perf_counter() - started:.0f} s)")
            paths[form, precision] = path
    return paths


def accuracies(models: dict[tuple[str, str], Path], paths: list[Path], labels: np.ndarray) -> dict[str, Any]:
    """a. Validation accuracy of each file through Classifier.predict on the files, and pixel - float per precision."""
    from cifar_edge.runtime import Classifier

    record: dict[str, Any] = {}
    for (form, precision), model in models.items():
        with Classifier(model, "cpu") as classifier:
            predicted = np.asarray([prediction.index for prediction in classifier.predict(paths)])
        record[f"{form} {precision}"] = round(100.0 * float(np.mean(predicted == labels)), 2)
    for precision in PRECISIONS:
        record[f"difference {precision} (points)"] = round(
            record[f"pixels {precision}"] - record[f"float {precision}"], 2
        )
    return record


def end_to_end(models: dict[str, Path], paths: list[Path], work: Path, rounds: int) -> dict[str, Any]:
    """b. cifar-infer --json over the files: img/s of each model, median of interleaved rounds of fresh processes."""
    folder = work / "e2e"
    for index, path in enumerate(paths):  # one folder of links, as a user points cifar-infer at a folder
        link = folder / path.parent.name / f"{index:05d}_{path.name}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)

    def run(model: Path) -> None:
        command = [str(cifar_infer_command()), str(folder), "--model", str(model), "--json", "--quiet"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0 and done.stdout.count("\n") == len(paths), done.stderr[-500:]

    jobs = {form: (lambda model=model: len(paths) / seconds(lambda: run(model))) for form, model in models.items()}
    measured = interleaved_rounds(jobs, rounds, warmup=1).results
    rates = medians(measured)
    return {
        "img_per_s": {form: round(rate, 1) for form, rate in rates.items()},
        "rounds": {form: [round(rate, 1) for rate in values] for form, values in measured.items()},
        "ratio pixels/float": round(rates["pixels"] / rates["float"], 3),
    }


def model_only(models: dict[str, Path], paths: list[Path], rounds: int) -> dict[str, Any]:
    """b. Classifier.forward on pre-prepared batches of 256 of each form's own input: img/s, interleaved rounds."""
    from cifar_edge.runtime import Classifier

    classifiers = {form: Classifier(model, "cpu") for form, model in models.items()}
    try:
        pixels = np.stack([classifiers["pixels"].prepare(path) for path in paths])  # decoded once, untimed
        batches = {
            form: [classifier.model_input.from_pixels(pixels[i : i + BATCH]) for i in range(0, len(pixels), BATCH)]
            for form, classifier in classifiers.items()
        }

        def job(form: str) -> float:
            return per_second(lambda: sum(len(classifiers[form].forward(batch)) for batch in batches[form]))

        measured = interleaved_rounds({form: (lambda form=form: job(form)) for form in models}, rounds, warmup=1)
    finally:
        for classifier in classifiers.values():
            classifier.close()
    rates = medians(measured.results)
    return {
        "inputs": {form: f"{batch[0].dtype} {list(batch[0].shape)}" for form, batch in batches.items()},
        "img_per_s": {form: round(rate, 1) for form, rate in rates.items()},
        "rounds": {form: [round(rate, 1) for rate in values] for form, values in measured.results.items()},
        "ratio pixels/float": round(rates["pixels"] / rates["float"], 3),
    }


def client_images(paths: list[Path], args: argparse.Namespace, folder: Path) -> dict[str, list[Path]]:
    """c. The JS clients' files, by group: validation JPEGs (links), the photos, and PNGs made from the JPEGs."""
    from cifar_edge.runtime.images import open_image_rgb

    chosen = [paths[i] for i in np.linspace(0, len(paths) - 1, min(args.client_images, len(paths))).astype(int)]
    width, height = (int(side) for side in args.png_size.lower().split("x"))
    groups: dict[str, list[Path]] = {
        "validation JPEGs": [],
        "photos": [],
        "PNG natural": [],
        f"PNG {width}x{height}": [],
    }
    for index, path in enumerate(chosen):
        link = folder / "val" / f"{index:04d}_{path.name}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
        groups["validation JPEGs"].append(link)
        if index < args.png_images:
            image = open_image_rgb(path)
            upscaled = image.resize((width, height), Image.Resampling.BICUBIC)
            for group, picture in (("PNG natural", image), (f"PNG {width}x{height}", upscaled)):
                target = folder / group.split()[-1] / f"{index:04d}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                picture.save(target)
                groups[group].append(target)
    for photo in sorted(args.photos.glob("*")) if args.photos.is_dir() else []:
        target = folder / "photos" / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        groups["photos"].append(Path(shutil.copyfile(photo, target)))
    return groups


def clients(models: dict[str, Path], groups: dict[str, list[Path]], folder: Path, rounds: int) -> dict[str, Any]:
    """c. Node and the browser against cifar-infer --json per group, and the browser's img/s at batch 1."""
    every = [path for group in groups.values() for path in group]
    record: dict[str, Any] = {"files": {group: len(paths) for group, paths in groups.items()}}
    for precision, model in models.items():
        served = Path(shutil.copyfile(model, folder / f"model.{precision}.onnx"))
        reference = run_cifar_infer(served, every, model_class_names(served))
        answers = {"node": run_node(served, every).answers}
        with BrowserPage(folder, served.name) as page:
            answers["browser"] = page.classify(every)
            if precision == "fp32":
                record["browser speed"] = browser_speed(page, served, groups["validation JPEGs"][:200], rounds)
            if page.errors:
                record[f"browser errors {precision}"] = page.errors[:5]
        for client, got in answers.items():
            rows = {"all": compare(reference, got, [str(path) for path in every]).to_dict()}
            rows.update(
                {
                    group: compare(reference, got, [str(p) for p in paths]).to_dict()
                    for group, paths in groups.items()
                    if paths
                }
            )
            record[f"{client} {precision}"] = rows
    return record


def browser_speed(page: BrowserPage, model: Path, paths: list[Path], rounds: int) -> dict[str, Any]:
    """img/s at batch 1: the page (fetch, decode, composite, run, show) against plain onnxruntime on one thread."""
    import onnxruntime

    from cifar_edge.runtime.images import open_image_rgb

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    pixels = [np.asarray(open_image_rgb(path))[np.newaxis] for path in paths]
    page_ms: list[float] = []

    def browser() -> float:
        started = time.perf_counter()
        answers = page.classify(paths)
        page_ms.extend(answer["ms"] for answer in answers.values())
        return len(paths) / (time.perf_counter() - started)

    def python() -> float:
        return per_second(lambda: sum(len(session.run(["probabilities"], {"pixels": p})[0]) for p in pixels))

    measured = interleaved_rounds({"browser": browser, "python": python}, rounds, warmup=1).results
    rates = medians(measured)
    model_rate = 1000.0 / float(np.median(page_ms))
    return {
        "images": len(paths),
        "browser img/s (page: fetch, decode, composite, run, show)": round(rates["browser"], 1),
        "browser img/s (composite + session run, median of the page's ms)": round(model_rate, 1),
        "python onnxruntime img/s (batch 1, 1 thread, session run)": round(rates["python"], 1),
        "ratio browser page / python": round(rates["browser"] / rates["python"], 3),
        "ratio browser run / python": round(model_rate / rates["python"], 3),
        "rounds": {name: [round(value, 1) for value in values] for name, values in measured.items()},
    }


def versions() -> dict[str, str]:
    """onnxruntime, node, the npm packages the clients use (as installed), Chromium."""
    import json

    import onnxruntime

    found = {"onnxruntime": onnxruntime.__version__}
    for package in ("onnxruntime-web", "sharp"):
        manifest = REPO_ROOT / "examples" / "node" / "node_modules" / package / "package.json"
        found[package] = json.loads(manifest.read_text())["version"] if manifest.is_file() else "missing"
    for name, command in (("node", ["node", "--version"]), ("chromium", ["/usr/bin/chromium", "--version"])):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
            found[name] = (done.stdout.strip().splitlines() or ["?"])[-1]
        except OSError:
            found[name] = "missing"
    return found


def print_report(record: dict[str, Any]) -> None:
    cpu = record["cpu"]
    print(f"\nCPU: {cpu['model']} ({cpu['machine']}), {os.cpu_count()} logical CPUs; load average {record['load']}")
    print("versions: " + ", ".join(f"{name} {version}" for name, version in record["versions"].items()))
    print(f"run: {record['run_dir']}; {record['validation_files']} validation files")
    accuracy = record["accuracy"]
    print("\na. validation accuracy through Classifier.predict on the files (target: |pixel - float| <= 0.05 point)")
    for precision in PRECISIONS:
        difference = accuracy[f"difference {precision} (points)"]
        print(
            f"  {precision}: pixel form {accuracy[f'pixels {precision}']:.2f}%, float form "
            f"{accuracy[f'float {precision}']:.2f}%, difference {difference:+.2f} point"
        )
    e2e, model = record["end to end"], record["model only"]
    print(
        f"\nb. fp32, pixel form against float form of the same weights ({record['rounds']} interleaved rounds, median)"
    )
    print(
        f"  cifar-infer --json over the {record['validation_files']:,} files: pixel {e2e['img_per_s']['pixels']:,.0f} "
        f"img/s, float {e2e['img_per_s']['float']:,.0f} img/s: {e2e['ratio pixels/float']:.3f}x (target >= 1)"
    )
    print(
        f"  model only, Classifier.forward, batches of {BATCH}: pixel {model['img_per_s']['pixels']:,.0f} img/s, "
        f"float {model['img_per_s']['float']:,.0f} img/s: {model['ratio pixels/float']:.3f}x (target within 3%)"
    )
    js = record["clients"]
    print(f"\nc. JS clients against cifar-infer --json (files: {js['files']})")
    print(f"  {'client':14} {'group':18} {'images':>6} {'top-1 agree':>11} {'max|dp| PNG':>12} {'max|dp| other':>13}")
    for client in ("node", "browser"):
        for precision in PRECISIONS:
            for group, row in js.get(f"{client} {precision}", {}).items():
                lossless = f"{row['max_prob_diff_lossless']:.1e}" if row["lossless_images"] else "-"
                other = f"{row['max_prob_diff_lossy']:.1e}" if row["images"] > row["lossless_images"] else "-"
                print(
                    f"  {client + ' ' + precision:14} {group:18} {row['images']:6} "
                    f"{row['top1_agreement_percent']:10.2f}% {lossless:>12} {other:>13}"
                )
    speed = js.get("browser speed", {})
    if speed:
        print(f"  browser at batch 1 on {speed['images']} validation JPEGs, fp32, one wasm thread:")
        for key, value in speed.items():
            if key.startswith(("browser", "python", "ratio")):
                print(f"    {key}: {value}")


def main() -> int:
    args = parse_args()
    paths, labels, contract = validation_files(args.run_dir, args.limit)
    record: dict[str, Any] = {
        "cpu": cpu_features(),
        "run_dir": str(args.run_dir),
        "validation_files": len(paths),
        "rounds": args.rounds,
        "load": round(os.getloadavg()[0], 2),
        "versions": versions(),
        "class_names": list(contract.class_names),
    }
    with tempfile.TemporaryDirectory(prefix="bench_portable_") as temporary:
        work = Path(temporary)
        print(f"exporting {args.run_dir} in both input forms, fp32 and int8 (parity gate on each)")
        models = export_both_forms(args.run_dir, work)
        print("a. accuracy")
        record["accuracy"] = accuracies(models, paths, labels)
        fp32 = {form: models[form, "fp32"] for form in FORMS}
        print("b. cifar-infer end to end")
        record["end to end"] = end_to_end(fp32, paths, work, args.rounds)
        print("b. model only")
        record["model only"] = model_only(fp32, paths, args.rounds)
        print("c. JS clients")
        groups = client_images(paths, args, work / "served")
        pixel_models = {precision: models["pixels", precision] for precision in PRECISIONS}
        record["clients"] = clients(pixel_models, groups, work / "served", args.rounds)
    record["load_after"] = round(os.getloadavg()[0], 2)
    print_report(record)
    save_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark ``cifar-serve`` on loopback: closed-loop clients against the offline throughput of plain onnxruntime.

Two servers run side by side, each idle while the other is measured: batching as configured, and
``--max-batch-size 1``. Closed-loop clients (a thread and a keep-alive ``http.client`` connection each, one image per
request) send validation JPEGs to the image endpoint (``/v2/models/NAME/classify``) and uint8 pixel tensors to the
binary Open Inference Protocol endpoint (``/infer``, binary output) at concurrency 1, 8 and 64. Everything runs in
interleaved rounds (``interleaved_rounds``), the offline baseline too (plain onnxruntime, same pixels, the server's
threads, batch 64 and batch 1, once per round). Targets (issue 33): tensor@64 >= 0.7x offline batch 64 and p99 <= 4x
p50; batching on/off at 64 >= 1.5x; concurrency-1 p50 minus offline batch-1 p50 <= 1.5 ms; ``--soak 300``
(concurrency 32, both endpoints): zero errors, server RSS growth < 10%. The clients share the server's cores, so the
served figures are a lower bound. Model: ``--model`` (pixel-form ONNX file or Triton repository) or ``--run-dir``.

    .venv/bin/python bench/serve.py --model runs/latest/model.onnx [--seconds 5] [--rounds 3] [--soak 300] [--out F]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cifar_edge.export.benchmark.timing import interleaved_rounds, save_record
from cifar_edge.runtime.serve.repository import served_model

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg"
CLI = Path(sys.executable).parent / "cifar-serve"
NAME = "bench"
TARGETS = {"served_vs_offline": 0.7, "p99_over_p50": 4.0, "batching_on_vs_off": 1.5, "conc1_overhead_ms": 1.5}


class Payload(NamedTuple):
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Load:
    """One closed-loop measurement: answered images, errors, wall seconds and every request's latency."""

    images: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def closed_loop(port: int, payloads: list[Payload], concurrency: int, seconds: float) -> Load:
    """``concurrency`` clients, each sending its next request as soon as the previous one is answered."""
    results = [Load() for _ in range(concurrency)]
    start = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        load, connection = results[index], http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start.wait()
        position = index
        while time.perf_counter() < deadline[0]:
            payload = payloads[position % len(payloads)]
            position += concurrency
            began = time.perf_counter()
            try:
                connection.request("POST", payload.path, body=payload.body, headers=payload.headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            if ok:
                load.images += 1
                load.latencies_ms.append((time.perf_counter() - began) * 1e3)
            else:
                load.errors += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(concurrency)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    latencies = [value for load in results for value in load.latencies_ms]
    images, errors = sum(load.images for load in results), sum(load.errors for load in results)
    return Load(images, errors, time.perf_counter() - began, latencies)


class Server:
    """A ``cifar-serve`` process on a free loopback port, ready when ``/v2/health/ready`` says so."""

    def __init__(self, model: Path, extra: list[str], log: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log = log
        command = [str(CLI), str(model), "--port", str(self.port), "--model-name", NAME, *extra]
        with open(log, "wb") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while self.get("/v2/health/ready")[0] != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cifar-serve did not become ready: {log.read_text()[-2000:]}")
            time.sleep(0.2)

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except OSError:
            return 0, b""
        finally:
            connection.close()

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.process.wait(timeout=60)
        self.process.kill()
        return -9


def validation_files(data: Path, count: int) -> list[Path]:
    """``count`` JPEGs of the data set's held-out folder (val/ or test/; else the files themselves), class by class."""
    from cifar_edge.runtime.contract import Contract
    from cifar_edge.runtime.labelled import list_labelled_files, resolve_image_folder, stratified_subset

    layout = resolve_image_folder(data, "validation")
    root = layout.held_out or layout.train or data
    files, labels = list_labelled_files(root, Contract())
    return [files[index] for index in stratified_subset(labels, count)]


def payloads_for(files: list[Path], pixels: list[np.ndarray], metadata: dict) -> dict[str, list[Payload]]:
    base = f"/v2/models/{NAME}"
    images = [Payload(f"{base}/classify", path.read_bytes(), {"Content-Type": "image/jpeg"}) for path in files]
    (model_input,), first_output = metadata["inputs"], metadata["outputs"][0]["name"]
    wanted = [{"name": first_output, "parameters": {"binary_data": True}}]
    tensors = []
    for array in pixels:
        sizes = {"shape": [1, *array.shape], "parameters": {"binary_data_size": array.nbytes}}
        tensor = {"name": model_input["name"], "datatype": "UINT8", **sizes}
        header = json.dumps({"inputs": [tensor], "outputs": wanted}).encode()
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
        tensors.append(Payload(f"{base}/infer", header + array.tobytes(), headers))
    return {"image": images, "tensor": tensors}


def offline_jobs(model: Path, pixels: list[np.ndarray], threads: int, seconds: float) -> dict[str, Callable]:
    """Plain onnxruntime on the same pixels: batch 64 throughput (img/s) and batch 1 latencies (ms)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = np.stack([pixels[index % len(pixels)] for index in range(64)])

    def throughput() -> float:
        images, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            session.run(None, {name: batch})
            images += len(batch)
        return images / (time.perf_counter() - began)

    def latency() -> list[float]:
        times = []
        for array in pixels[:200]:
            began = time.perf_counter()
            session.run(None, {name: array[None]})
            times.append((time.perf_counter() - began) * 1e3)
        return times

    return {"offline@64": throughput, "offline@1": latency}


def summary(loads: list[Load]) -> dict[str, float]:
    latencies = [value for load in loads for value in load.latencies_ms] or [float("nan")]
    p50, p99 = (float(np.percentile(latencies, q)) for q in (50, 99))
    rate, errors = statistics.median(load.rate for load in loads), sum(load.errors for load in loads)
    return {"img_s": rate, "p50_ms": p50, "p99_ms": p99, "errors": errors}


def model_file(args: argparse.Namespace, work: Path) -> Path:
    if args.model:
        return Path(args.model)
    from cifar_edge.export import ExportConfig, export_run

    result = export_run(args.run_dir, ExportConfig(output=str(work / "model.onnx"), verify_images=0))
    if result.exit_code != 0:
        raise SystemExit(f"export failed: {result.to_dict()}")
    return work / "model.onnx"


def cpu_name() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


@contextlib.contextmanager
def servers(model: Path, work: Path) -> Iterator[dict[str, Server]]:
    started: dict[str, Server] = {}
    try:
        started["batched"] = Server(model, [], work / "batched.log")
        started["unbatched"] = Server(model, ["--max-batch-size", "1"], work / "unbatched.log")
        yield started
    finally:
        codes = {key: server.stop() for key, server in started.items()}
        print(f"server exit codes after SIGTERM: {codes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX file (pixel form) or Triton repository folder")
    parser.add_argument("--run-dir", default="runs/latest", help="a run exported here when --model is not given")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--soak", type=float, default=0.0, help="seconds at concurrency 32 (0: none)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from cifar_edge.runtime.images import open_image_rgb
    from cifar_edge.runtime.session import default_intra_op_threads

    levels = [int(value) for value in args.concurrency.split(",")]
    threads = default_intra_op_threads()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        model = model_file(args, work)
        files = validation_files(args.data, args.images)
        pixels = [np.asarray(open_image_rgb(path), dtype=np.uint8) for path in files]
        with servers(model, work) as running:
            measured, soak = measure(running, served_model(model).model_path, files, pixels, args)
    report(measured, levels, soak, args, threads)


def measure(
    running: dict[str, Server], model: Path, files: list[Path], pixels: list[np.ndarray], args: argparse.Namespace
) -> tuple[dict[str, list], dict[str, float] | None]:
    """Every measurement in interleaved rounds (after one uncounted warm-up each), then the soak if asked for."""
    from cifar_edge.runtime.session import default_intra_op_threads

    levels = [int(value) for value in args.concurrency.split(",")]
    metadata = json.loads(running["batched"].get(f"/v2/models/{NAME}")[1])
    payloads = payloads_for(files, pixels, metadata)
    port, off_port, top = running["batched"].port, running["unbatched"].port, max(levels)
    load_jobs = {f"{kind}@{level}": (port, kind, level) for kind in ("tensor", "image") for level in levels}
    load_jobs[f"tensor-unbatched@{top}"] = (off_port, "tensor", top)
    jobs: dict[str, Callable] = {
        key: lambda p=p, k=k, c=c: closed_loop(p, payloads[k], c, args.seconds) for key, (p, k, c) in load_jobs.items()
    }
    jobs.update(offline_jobs(model, pixels, default_intra_op_threads(), min(args.seconds, 2.0)))
    for _, (warm_port, kind, _) in load_jobs.items():
        closed_loop(warm_port, payloads[kind], 8, 1.0)
    measured = interleaved_rounds(jobs, args.rounds, warmup=0).results
    soak = run_soak(running["batched"], payloads, args.soak) if args.soak > 0 else None
    return measured, soak


def run_soak(server: Server, payloads: dict[str, list[Payload]], seconds: float) -> dict[str, float]:
    mixed = [payload for pair in zip(payloads["tensor"], payloads["image"], strict=False) for payload in pair]
    closed_loop(server.port, mixed, 32, 10.0)  # settle the allocator before the first reading
    before = server.rss_mib()
    load = closed_loop(server.port, mixed, 32, seconds)
    after = server.rss_mib()
    growth = 100 * (after - before) / before
    return {"seconds": seconds, "img_s": load.rate, "errors": load.errors, "rss_mib_before": before,
            "rss_mib_after": after, "rss_growth_pct": growth}  # fmt: skip


def report(measured: dict, levels: list[int], soak: dict | None, args: argparse.Namespace, threads: int) -> None:
    top = max(levels)
    served = {key: summary(values) for key, values in measured.items() if not key.startswith("offline")}
    offline = measured["offline@64"]
    offline_p50 = float(np.median([value for values in measured["offline@1"] for value in values]))
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores); onnxruntime threads {threads}; {args.rounds} rounds")
    print(f"{'measure':<24}{'img/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for key, row in served.items():
        print(f"{key:<24}{row['img_s']:>10.0f}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}{row['errors']:>8}")
    print(f"{'offline@64 (per round)':<24}{', '.join(f'{rate:.0f}' for rate in offline)}")
    print(f"{'offline@1 p50 ms':<24}{offline_p50:>10.3f}")
    batched = served[f"tensor@{top}"]
    ratios = {
        "served_vs_offline": batched["img_s"] / statistics.median(offline),
        "p99_over_p50": batched["p99_ms"] / batched["p50_ms"],
        "batching_on_vs_off": batched["img_s"] / served[f"tensor-unbatched@{top}"]["img_s"],
        "conc1_overhead_ms": served["tensor@1"]["p50_ms"] - offline_p50 if 1 in levels else float("nan"),
    }
    for key, value in ratios.items():
        better = value <= TARGETS[key] if key in ("p99_over_p50", "conc1_overhead_ms") else value >= TARGETS[key]
        print(f"{key:<24}{value:>10.2f}  target {TARGETS[key]}  {'ok' if better else 'MISSED'}")
    if soak is not None:
        print("soak: " + ", ".join(f"{key} {value:.1f}" for key, value in soak.items()))
    record = {"cpu": cpu_name(), "threads": threads, "served": served, "offline_64_img_s": offline}
    save_record(args.out, {**record, "offline_1_p50_ms": offline_p50, "ratios": ratios, "soak": soak})


if __name__ == "__main__":
    main()

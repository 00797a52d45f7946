"""cifar-serve's command line: safe by default (loopback, or a key, or --no-auth on purpose), strict providers,
the [serve] extra named when missing, the API key checked on every route but health, batching off with 1."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from cli_helpers import error_lines, run_cli
from serve_helpers import running

pytestmark = pytest.mark.timeout(120)


def test_non_loopback_without_a_key_refuses_in_one_line(form_models: dict[str, Path]) -> None:
    result = run_cli("cifar-serve", form_models["pixels"], "--host", "0.0.0.0", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--api-key" in result.stderr and "--no-auth" in result.stderr
    both = run_cli("cifar-serve", form_models["pixels"], "--api-key", "k", "--no-auth", timeout=60)
    assert both.returncode == 2 and both.stderr.count("\n") == 1


def test_unusable_model_and_unavailable_provider(form_models: dict[str, Path], tmp_path: Path) -> None:
    missing = run_cli("cifar-serve", tmp_path / "none.onnx", timeout=60)
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and missing.stderr.count("\n") == 1
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a CUDA-enabled onnxruntime may really load CUDA here")
    cuda = run_cli("cifar-serve", form_models["pixels"], "--provider", "cuda", "--port", "0", timeout=60)
    assert cuda.returncode == 3, cuda.stderr
    assert cuda.stderr.startswith("error:") and cuda.stderr.count("\n") == 1


def test_missing_serve_extra_is_one_line(form_models: dict[str, Path]) -> None:
    result = run_cli("cifar-serve", form_models["pixels"], block=("uvicorn", "starlette"), timeout=60)
    assert result.returncode == 2
    assert error_lines(result.stderr, "cifar-serve") == [
        "cifar-serve: error: needs the [serve] extra (uvicorn is not installed): pip install 'cifar-edge[serve,cpu]'"
    ]
    assert run_cli("cifar-serve", "--help", block=("uvicorn", "starlette"), timeout=60).returncode == 0


def test_key_is_required_when_set_and_batching_can_be_off(form_models: dict[str, Path], tmp_path: Path) -> None:
    origin = "http://camera.example"
    args = ["--api-key", "s3cret", "--max-batch-size", "1", "--cors-origin", origin]
    with running(form_models["pixels"], tmp_path / "serve.log", *args) as server:
        url = server.url + "/v2/models/conv_pixels"
        assert httpx.get(server.url + "/v2/health/live", timeout=10).status_code == 200
        assert httpx.get(server.url + "/v2/health/ready", timeout=10).status_code == 200
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
            refused = httpx.get(url, headers=headers, timeout=10)
            assert refused.status_code == 401 and "error" in refused.json()
        assert httpx.get(server.url + "/metrics", timeout=10).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer s3cret"}, timeout=10).status_code == 200
        config = httpx.get(url + "/config", headers={"X-API-Key": "s3cret"}, timeout=10).json()
        assert config["max_batch_size"] == 1 and "dynamic_batching" not in config
        preflight = httpx.options(
            url + "/infer",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            timeout=10,
        )
        assert preflight.headers.get("access-control-allow-origin") == origin
        client = triton.InferenceServerClient(server.address, connection_timeout=10, network_timeout=30)
        images = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
        tensor = triton.InferInput("pixels", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)
        result = client.infer("conv_pixels", [tensor], headers={"Authorization": "Bearer s3cret"})
        assert result.as_numpy("logits").shape == (3, 10)  # several images in one request: one call, batching off


def test_no_cors_unless_asked(form_models: dict[str, Path], tmp_path: Path) -> None:
    with running(form_models["pixels"], tmp_path / "serve.log") as server:
        answer = httpx.get(server.url + "/v2", headers={"Origin": "http://elsewhere.example"}, timeout=10)
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
        assert "model 'conv_pixels'" in server.stderr() and "provider " in server.stderr()


def test_a_triton_repository_is_served_with_its_config(form_models: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "repository" / "cifar"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx").write_bytes(form_models["pixels"].read_bytes())
    (folder / "config.pbtxt").write_text(
        'name: "cifar"\nbackend: "onnxruntime"\nmax_batch_size: 16\n'
        "dynamic_batching { max_queue_delay_microseconds: 500 }\ninstance_group [ { count: 1, kind: KIND_CPU } ]\n"
    )
    with running(tmp_path / "repository", tmp_path / "serve.log") as server:
        config = httpx.get(server.url + "/v2/models/cifar/config", timeout=10).json()
        assert config["max_batch_size"] == 16
        assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 500}

"""cifar-serve's HTTP routes (starlette, no pydantic): the Open Inference Protocol (health, server and model metadata,
Triton's model config, infer), the image endpoint (``/classify``: the ``cifar-infer --json`` record per image),
``/metrics`` and the page at ``/``. Errors are ``{"error": "..."}`` with their status. Decoding, parsing of large
bodies and the model all run off the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from cifar_edge.runtime.images import ImageDecodeError
from cifar_edge.runtime.predictions import Failure, predictions_from_scores
from cifar_edge.runtime.serve.batcher import Batcher, QueueFull
from cifar_edge.runtime.serve.guards import ApiKey, BodyLimit, BodyTooLarge, RequestLog
from cifar_edge.runtime.serve.metrics import CONTENT_TYPE, ServeMetrics
from cifar_edge.runtime.serve.protocol import (
    BINARY_HEADER,
    ModelSpec,
    ProtocolError,
    encode_infer_answer,
    model_config,
    model_metadata,
    parse_infer_request,
)

REQUEST_TIMEOUT_S = 30.0  # a request not answered by then gets 504 (its queued job is dropped)
RETRY_AFTER_S = 1  # what a 503 for a full queue tells the client
_PARSE_OFF_LOOP_BYTES = 64 << 10  # bodies larger than this are parsed on a thread
MAX_IMAGES_PER_FORM = 64


@dataclass
class ServeState:
    spec: ModelSpec
    batcher: Batcher
    metrics: ServeMetrics
    prepare: Callable[[bytes], np.ndarray]  # encoded image -> contract-size uint8 pixels (the runtime's safe decoder)
    ready: bool = False  # loaded and warmed, not draining
    api_key: str | None = None
    cors_origin: str | None = None
    max_body_bytes: int = 8 << 20


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def build_app(state: ServeState) -> Starlette:
    routes = [
        Route("/", _page),
        Route("/v2/health/live", _live),
        Route("/v2/health/ready", _ready),
        Route("/v2", _server_metadata),
        Route("/metrics", _metrics),
        Route("/v2/models/{name}/classify", _classify, methods=["POST"]),
    ]
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [
            Route(prefix, _model_metadata),
            Route(prefix + "/ready", _model_ready),
            Route(prefix + "/config", _model_config),
            Route(prefix + "/infer", _infer, methods=["POST"]),
        ]
    middleware = [Middleware(RequestLog, metrics=state.metrics)]
    if state.cors_origin:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=[state.cors_origin],
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "X-API-Key", "Content-Type", BINARY_HEADER],
                expose_headers=[BINARY_HEADER],
            )
        )
    if state.api_key:
        middleware.append(Middleware(ApiKey, key=state.api_key))
    middleware.append(Middleware(BodyLimit, limit=state.max_body_bytes))
    handlers: dict[Any, Any] = {BodyTooLarge: _too_large, HTTPException: _http_error, ClientDisconnect: _gone}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.serve = state
    return app


def _state(request: Request) -> ServeState:
    state: ServeState = request.app.state.serve
    return state


def _model(request: Request) -> ServeState:
    state = _state(request)
    name = request.path_params["name"]
    if name != state.spec.name:
        raise HTTPException(404, f"unknown model {name!r}; this server serves {state.spec.name!r}")
    version = request.path_params.get("version")
    if version not in (None, "", "1"):
        raise HTTPException(404, f"model {name!r} has no version {version!r}; it has version 1")
    return state


async def _too_large(_request: Request, exc: Exception) -> Response:
    return error(413, str(exc))


async def _gone(_request: Request, _exc: Exception) -> Response:
    return Response(status_code=499)  # the client went away mid-body: no one to answer, nothing to log but the line


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, str(exc.detail), exc.headers)


async def _page(request: Request) -> Response:
    page = resources.files("cifar_edge.runtime.serve").joinpath("page.html").read_text(encoding="utf-8")
    return HTMLResponse(page.replace("__MODEL_NAME__", json.dumps(_state(request).spec.name)))


async def _live(_request: Request) -> Response:
    return JSONResponse({"live": True})


async def _ready(request: Request) -> Response:
    ready = _state(request).ready
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


async def _server_metadata(_request: Request) -> Response:
    extensions = ["binary_tensor_data", "classification", "model_configuration"]
    return JSONResponse({"name": "cifar-serve", "version": _version(), "extensions": extensions})


async def _metrics(request: Request) -> Response:
    return Response(_state(request).metrics.exposition(), media_type=CONTENT_TYPE)


async def _model_metadata(request: Request) -> Response:
    return JSONResponse(model_metadata(_model(request).spec))


async def _model_ready(request: Request) -> Response:
    ready = _model(request).ready
    return JSONResponse({"name": request.path_params["name"], "ready": ready}, status_code=200 if ready else 503)


async def _model_config(request: Request) -> Response:
    return JSONResponse(model_config(_model(request).spec))


async def _infer(request: Request) -> Response:
    state = _model(request)
    body = await request.body()
    header_length = request.headers.get(BINARY_HEADER)
    try:
        if len(body) > _PARSE_OFF_LOOP_BYTES:
            parsed = await run_in_threadpool(parse_infer_request, body, header_length, state.spec)
        else:
            parsed = parse_infer_request(body, header_length, state.spec)
    except ProtocolError as problem:
        return error(problem.status, str(problem))
    scores = await _scores(state, "tensor", parsed.tensor)
    if isinstance(scores, Response):
        return scores
    answer = encode_infer_answer(state.spec, parsed, scores)
    if answer.header_length is None:
        return Response(answer.body, media_type="application/json")
    headers = {BINARY_HEADER: str(answer.header_length)}
    return Response(answer.body, media_type="application/octet-stream", headers=headers)


async def _scores(state: ServeState, kind: str, items: np.ndarray) -> np.ndarray | Response:
    """The model's scores for ``items`` through the batcher, or the error answer (503, 504, 400, 500)."""
    try:
        return await asyncio.wait_for(state.batcher.submit(kind, items), REQUEST_TIMEOUT_S)
    except QueueFull:
        return error(503, "the server is busy: the queue is full", {"Retry-After": str(RETRY_AFTER_S)})
    except asyncio.TimeoutError:
        return error(504, f"not answered within {REQUEST_TIMEOUT_S:g} s")
    except ValueError as problem:
        return error(400, f"the model cannot take this input ({problem})")
    except Exception as problem:
        return error(500, f"the model failed: {type(problem).__name__}: {problem}")


async def _classify(request: Request) -> Response:
    state = _model(request)
    try:
        top_k = int(request.query_params.get("top_k", "3"))
    except ValueError:
        return error(400, "top_k must be an integer")
    if top_k < 1:
        return error(400, "top_k must be at least 1")
    images = await _uploaded_images(request)
    if isinstance(images, Response):
        return images
    records: list[dict[str, Any] | None] = [None] * len(images)
    pixels, sources, places = [], [], []
    for place, (source, data) in enumerate(images):
        try:
            pixels.append(await run_in_threadpool(state.prepare, data))
            sources.append(source)
            places.append(place)
        except ImageDecodeError as problem:
            records[place] = Failure(source, problem.reason).to_dict()
    if pixels:
        scores = await _scores(state, "pixels", np.stack(pixels))
        if isinstance(scores, Response):
            return scores
        results = predictions_from_scores(scores, sources, state.spec.contract, top_k=top_k)
        for place, result in zip(places, results, strict=True):
            records[place] = result.to_dict()
    if len(records) == 1:
        record = records[0] or {}
        if "error" in record:
            return error(400, f"{record['path']}: {record['error']}")
        return JSONResponse(record)
    return JSONResponse(records)


async def _uploaded_images(request: Request) -> list[tuple[str, bytes]] | Response:
    """(name, bytes) of each image: the raw body (named by ``?name=``), or each file of a multipart form."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        body = await request.body()
        if not body:
            return error(400, "no image: send the encoded image as the body, or as files of a multipart form")
        return [(request.query_params.get("name", "image"), body)]
    async with request.form(max_files=MAX_IMAGES_PER_FORM, max_fields=MAX_IMAGES_PER_FORM) as form:
        files = [value for _key, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            return error(400, "the form holds no file")
        return [(upload.filename or f"image {number}", await upload.read()) for number, upload in enumerate(files)]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cifar-edge")
    except PackageNotFoundError:
        return "unknown"

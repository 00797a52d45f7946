"""``Classifier``: one onnxruntime session, reused, that classifies paths, PIL images and uint8 arrays.

Inputs are decoded and resized by a thread pool (Pillow and onnxruntime both release the GIL for their heavy
work). On the CPU each pool thread then runs the session on its own share of the batch (``streams``); on a GPU
the main thread runs whole batches while the pool decodes the next ones.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cifar_edge.runtime.batching import run_in_batches
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.images import ImageDecodeError
from cifar_edge.runtime.model_file import (
    ModelError,
    check_contract_limits,
    check_graph_matches_contract,
    check_model_file,
    model_io,
    read_contract,
    read_provenance,
)
from cifar_edge.runtime.pixels import bytes_pixels, file_pixels
from cifar_edge.runtime.predictions import Failure, Prediction, softmax, top_k_predictions
from cifar_edge.runtime.preprocess import normalize_batch, resize_to_contract
from cifar_edge.runtime.providers.strict import create_session, usable_cpu_count
from cifar_edge.runtime.sources import ImageInput, array_to_image, describe_source, is_single_item, pil_to_rgb
from cifar_edge.runtime.streams import plan_threads, split_bounds

DEFAULT_BATCH_SIZE = 64  # images per session run: large enough to amortise the call, small enough for edge memory
DEFAULT_TOP_K = 3
_MAX_DECODE_CHUNK = 16  # images per decoding task when the main thread runs the session
_BATCHES_AHEAD = 2  # batches decoding (and, with streams, running) while the current one is collected


@dataclass(frozen=True)
class _PreparedChunk:
    # (source, None) for an image that is in ``inputs``, in order; (source, Failure) for one that is not.
    entries: list[tuple[str, Failure | None]]
    inputs: np.ndarray  # model-ready (n, 3, H, W)
    scores: np.ndarray | None = None  # the model's (n, classes) output, when the pool thread ran it


class Classifier:
    """Classify images with an exported cifar-edge ONNX model.

    >>> classifier = Classifier("runs/latest/model.onnx", provider="cpu")
    >>> classifier.predict("dog.png").label

    ``provider`` is "cpu", "cuda", "tensorrt" (strict: ProviderUnavailableError when not active) or "auto".
    ``streams``: session runs at once, each on its own share of a batch, and ``intra_op_threads`` per run; by
    default one thread per run and one run per usable core on the CPU, one run on every core on a GPU; giving
    only ``intra_op_threads`` means one run with that many threads. ``decode_workers`` defaults to all usable
    cores (at least ``streams``); ``max_pixels`` to Pillow's decompression-bomb limit; ``spin`` lets
    onnxruntime's threads spin-wait (its default). Attributes: ``contract``, ``provenance`` (dict or None),
    ``provider`` (the one running), ``providers`` (the session's active list), ``intra_op_threads``,
    ``streams``, ``path``, ``sha256``, ``note``.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        provider: str = "cpu",
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        intra_op_threads: int | None = None,
        streams: int | None = None,
        decode_workers: int | None = None,
        max_pixels: int | None = None,
        spin: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path = Path(model)
        self.sha256 = check_model_file(self.path)
        plan = plan_threads(provider, intra_op_threads, streams, usable_cpu_count())
        try:
            opened = create_session(self.path, provider, intra_op_threads=plan.intra_op_threads, spin=spin)
        except ModelError:
            raise
        except Exception as error:
            if type(error).__module__.startswith("onnxruntime"):
                message = " ".join(str(error).split())[:300]
                raise ModelError(f"{self.path}: onnxruntime cannot load this model ({message})") from None
            raise
        self.session = opened.session
        self.provider = opened.provider
        self.providers = opened.active_providers
        self.note = opened.note
        self.intra_op_threads = opened.intra_op_threads
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.contract: Contract = read_contract(metadata, self.path)
        self.provenance: dict[str, Any] | None = read_provenance(metadata)
        self.io = model_io(self.session, self.contract)
        check_graph_matches_contract(self.io, self.contract, self.path)
        check_contract_limits(self.contract, self.path, max_pixels)
        self._input_dtype = np.float16 if self.io.input_type == "tensor(float16)" else np.float32
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        # Streams the caller did not ask for are for the CPU: a session that "auto" opened on a GPU runs one.
        self.streams = plan.streams if streams is not None or self.provider == "cpu" else 1
        self.decode_workers = max(decode_workers or usable_cpu_count(), self.streams)
        self._pool: ThreadPoolExecutor | None = None

    # -- public API -----------------------------------------------------------------------------------------------

    def predict(self, items: ImageInput | Iterable[ImageInput], *, top_k: int = DEFAULT_TOP_K) -> Any:
        """One input -> one Prediction; a list (or an (N, H, W, 3) uint8 array) -> a list of Predictions.

        Raises ImageDecodeError for the first input that cannot be decoded. Use :meth:`predict_iter` to get a
        Failure in its place and carry on.
        """
        single = is_single_item(items)
        results = []
        for result in self.predict_iter([items] if single else items, top_k=top_k):
            if isinstance(result, Failure):
                raise ImageDecodeError(result.source, result.reason)
            results.append(result)
        return results[0] if single else results

    def predict_iter(
        self, items: Iterable[ImageInput | Failure], *, top_k: int = DEFAULT_TOP_K, batch_size: int | None = None
    ) -> Iterator[Prediction | Failure]:
        """Yield a Prediction or a Failure per item, in input order, batching and decoding ahead in threads.

        A Failure passed in (e.g. an unmatched glob from input expansion) is yielded back in its place.
        """
        batch_size = batch_size or self.batch_size
        # Each batch is split into chunks, one pool task each, that decode, resize AND normalise their images (and
        # run the session on them, with streams): the main thread only joins a few arrays. (Stacking 64 small
        # arrays on the main thread made it queue for the GIL behind the decoders, costing a fifth of the speed.)
        streamed = self.streams > 1
        if streamed:
            chunk_size = -(-batch_size // self.streams)
        else:
            chunk_size = min(_MAX_DECODE_CHUNK, -(-batch_size // self.decode_workers))
        numbered = enumerate(items)
        in_flight: deque[list[Future[_PreparedChunk]]] = deque()
        exhausted = False

        def refill() -> None:
            nonlocal exhausted
            # Two batches ahead: the decoders stay busy while the session runs the current one.
            while not exhausted and len(in_flight) < _BATCHES_AHEAD:
                batch = list(itertools.islice(numbered, batch_size))
                if not batch:
                    exhausted = True
                    return
                pool = self._decode_pool()
                starts = range(0, len(batch), chunk_size)
                task = [pool.submit(self._prepare_chunk, batch[i : i + chunk_size], streamed) for i in starts]
                in_flight.append(task)

        refill()
        while in_flight:
            futures = in_flight.popleft()
            refill()
            chunks = [future.result() for future in futures]
            sources = [source for chunk in chunks for source, failure in chunk.entries if failure is None]
            predictions = iter(self._classify_chunks(chunks, sources, top_k) if sources else [])
            for chunk in chunks:
                for _source, failure in chunk.entries:
                    yield failure if failure is not None else next(predictions)

    def prepare(self, item: ImageInput) -> np.ndarray:
        """One input -> uint8 (H, W, 3) at the contract's size (decoded, oriented, RGB, resized).

        Inputs: a path; the bytes of an encoded image file; a PIL image; a uint8 array (H, W, 3), (H, W) or (H, W, 4).
        """
        contract = self.contract
        if isinstance(item, str | os.PathLike):
            return file_pixels(item, contract, max_pixels=self.max_pixels)
        if isinstance(item, bytes):
            return bytes_pixels(item, "<bytes>", contract, max_pixels=self.max_pixels)
        if isinstance(item, np.ndarray):
            image = array_to_image(item, contract.alpha_background)
        elif isinstance(item, Image.Image):
            image = pil_to_rgb(item, contract.alpha_background)
        else:
            raise TypeError(
                f"cannot classify a {type(item).__name__}: pass a path, encoded bytes, a PIL image or a uint8 array"
            )
        return resize_to_contract(image, contract)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) images at the contract size -> the model's raw (N, classes) output."""
        return self._run_batches(normalize_batch(images, self.contract).astype(self._input_dtype, copy=False))

    def forward(self, inputs: np.ndarray) -> np.ndarray:
        """Normalised float32 (N, 3, H, W) inputs -> the model's raw (N, classes) output (cast to its input type)."""
        return self._run_batches(np.ascontiguousarray(inputs).astype(self._input_dtype, copy=False))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Classifier({str(self.path)!r}, provider={self.provider!r}, classes={self.contract.num_classes})"

    # -- internals ------------------------------------------------------------------------------------------------

    def _prepare_chunk(self, chunk: list[tuple[int, ImageInput | Failure]], run: bool) -> _PreparedChunk:
        entries: list[tuple[str, Failure | None]] = []
        images: list[np.ndarray] = []
        for position, item in chunk:
            if isinstance(item, Failure):
                entries.append((item.source, item))
                continue
            source = describe_source(item, position)
            try:
                images.append(self.prepare(item))
                entries.append((source, None))
            except ImageDecodeError as error:
                entries.append((source, Failure(source, error.reason)))
        if images:
            inputs = normalize_batch(np.stack(images), self.contract).astype(self._input_dtype, copy=False)
        else:
            height, width = self.contract.image_size
            inputs = np.empty((0, 3, height, width), self._input_dtype)
        return _PreparedChunk(entries, inputs, self._run_serial(inputs) if run and len(inputs) else None)

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        (output,) = self.session.run([self.io.output_name], {self.io.input_name: inputs})
        output = np.asarray(output)
        if output.ndim != 2 or output.shape != (len(inputs), self.contract.num_classes):
            raise ModelError(
                f"{self.path}: model output has shape {output.shape}, expected ({len(inputs)}, "
                f"{self.contract.num_classes})"
            )
        return output

    def _run_serial(self, inputs: np.ndarray) -> np.ndarray:
        fixed = self.io.fixed_batch_size
        if fixed is None:
            return self._run(inputs)
        # A model exported with a fixed batch size: run in chunks of exactly that size, padding the last one.
        return run_in_batches(self._run, inputs, fixed, pad=True)

    def _run_batches(self, inputs: np.ndarray) -> np.ndarray:
        bounds = split_bounds(len(inputs), self.streams, self.io.fixed_batch_size or 1)
        if len(bounds) < 2:
            return self._run_serial(inputs)
        pool = self._decode_pool()
        futures = [pool.submit(self._run_serial, inputs[start:stop]) for start, stop in bounds]
        return np.concatenate([future.result() for future in futures])

    def _classify_chunks(self, chunks: list[_PreparedChunk], sources: list[str], top_k: int) -> list[Any]:
        ran = [chunk.scores for chunk in chunks if chunk.scores is not None]
        if ran:
            scores = np.concatenate(ran)
        else:
            scores = self._run_batches(np.concatenate([chunk.inputs for chunk in chunks if len(chunk.inputs)]))
        # A NaN or infinite score means no prediction: that input fails (one line), it is never reported as a number.
        finite = np.isfinite(scores).all(axis=1)
        kept = scores[finite]
        probabilities = softmax(kept) if self.contract.output_kind == "logits" else kept.astype(np.float64)
        kept_sources = [source for source, ok in zip(sources, finite, strict=True) if ok]
        predictions = iter(top_k_predictions(probabilities, kept_sources, self.contract.class_names, top_k))
        return [
            next(predictions) if ok else Failure(source, "the model's scores are not finite (NaN or infinity)")
            for source, ok in zip(sources, finite, strict=True)
        ]

    def _decode_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="cifar-decode")
        return self._pool

"""``Classifier``: one onnxruntime session, reused, that classifies paths, encoded bytes, PIL images and uint8 arrays.

Inputs are decoded and resized by a thread pool (Pillow and onnxruntime both release the GIL for their heavy
work). On the CPU each pool thread then runs the session on its own share of the batch (``streams``); on a GPU
the main thread runs whole batches while the pool decodes the next ones.

One Classifier may be shared by several threads (a server's request handlers): every public method but ``close``
may be called from several threads at once. onnxruntime runs one session from many threads; each call keeps its
own state; the one piece of shared state created late, the thread pool, is created under a lock.

Both input forms run alike: images are decoded and resized to the contract size by Pillow either way; then a
float-form model gets them normalised (float NCHW), a pixel-form one the uint8 NHWC pixels (``ModelInput``).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image

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
from cifar_edge.runtime.predictions import Failure, Prediction, predictions_from_scores
from cifar_edge.runtime.preprocess import ImageInput, ModelInput, describe_source, input_pixels
from cifar_edge.runtime.session import (
    choose_concurrency,
    create_session,
    forward_in_batches,
    split_bounds,
    usable_cpu_count,
)

DEFAULT_BATCH_SIZE = 64  # images per session run: large enough to amortise the call, small enough for edge memory
DEFAULT_TOP_K = 3
_MAX_DECODE_CHUNK = 16  # images per decoding task when the main thread runs the session
_BATCHES_AHEAD = 2  # batches decoding (and, with streams, running) while the current one is collected


@dataclass(frozen=True)
class _PreparedChunk:
    # (source, None) for an image that is in ``inputs``, in order; (source, Failure) for one that is not.
    entries: list[tuple[str, Failure | None]]
    inputs: np.ndarray  # model-ready: float (n, 3, H, W), or uint8 (n, H, W, 3) for a pixel-form model
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
    ``streams``, ``path``, ``sha256``, ``note``, ``model_input`` (the input form: ``describe()`` says it).

    Thread safety: ``classify_batch``, ``predict``, ``predict_iter``, ``prepare``, ``logits`` and ``forward`` may
    be called from several threads at once on one Classifier, and each returns what it would return alone. Only
    ``close`` must wait until the other calls have returned.
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
        concurrency = choose_concurrency(provider, intra_op_threads, streams, usable_cpu_count())
        try:
            opened = create_session(self.path, provider, intra_op_threads=concurrency.intra_op_threads, spin=spin)
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
        self.model_input = ModelInput.for_graph(self.contract, self.io.input_type)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        # Streams the caller did not ask for are for the CPU: a session that "auto" opened on a GPU runs one.
        self.streams = concurrency.streams if streams is not None or self.provider == "cpu" else 1
        self.decode_workers = max(decode_workers or usable_cpu_count(), self.streams)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()  # two threads' first calls must not both create a pool

    # -- public API -----------------------------------------------------------------------------------------------

    def classify_batch(
        self, images: Sequence[Image.Image | np.ndarray] | np.ndarray, *, top_k: int = DEFAULT_TOP_K
    ) -> list[Prediction]:
        """Decoded images -> one Prediction each, in order; safe to call from several threads at once.

        ``images``: a list of PIL images or uint8 arrays ((H, W, 3), (H, W) or (H, W, 4), any size: each is
        resized to the contract's, as :meth:`predict` does), or one uint8 (N, H, W, 3) array. Each call decodes in
        its own thread and runs the model in batches of ``batch_size`` (with ``streams``, split over the pool).
        Raises ImageDecodeError naming the first image that cannot be classified (a wrong dtype or shape, or
        scores that are not finite), TypeError for paths or bytes (pass those to :meth:`predict`).
        """
        if isinstance(images, np.ndarray) and images.ndim != 4:
            raise ValueError(f"classify_batch takes a list of images or a uint8 (N, H, W, 3) array, got {images.shape}")
        if isinstance(images, str | bytes | os.PathLike | Image.Image):
            raise TypeError("classify_batch takes a list of decoded images (PIL images or uint8 arrays)")
        results: list[Prediction] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            sources = [describe_source(image, start + offset) for offset, image in enumerate(chunk)]
            scores = self.logits(self._pixels(chunk))
            for result in predictions_from_scores(scores, sources, self.contract, top_k=top_k):
                if isinstance(result, Failure):
                    raise ImageDecodeError(result.source, result.reason)
                results.append(result)
        return results

    def predict(self, items: ImageInput | Iterable[ImageInput], *, top_k: int = DEFAULT_TOP_K) -> Any:
        """One input -> one Prediction; a list (or an (N, H, W, 3) uint8 array) -> a list of Predictions.

        Raises ImageDecodeError for the first input that cannot be decoded. Use :meth:`predict_iter` to get a
        Failure in its place and carry on.
        """
        single = isinstance(items, str | os.PathLike | bytes | Image.Image) or (
            isinstance(items, np.ndarray) and items.ndim != 4
        )
        inputs = [cast(ImageInput, items)] if single else cast(Iterable[ImageInput], items)
        results = []
        for result in self.predict_iter(inputs, top_k=top_k):
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
        # Each batch is split into chunks, one pool task each, that decode, resize AND stack (and, for the float
        # form, normalise) their images, and with streams run the session on them: the main thread only joins a few
        # arrays. (Stacking 64 small
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
            predictions = iter(predictions_from_scores(self._chunk_scores(chunks), sources, self.contract, top_k=top_k))
            for chunk in chunks:
                for _source, failure in chunk.entries:
                    yield failure if failure is not None else next(predictions)

    def prepare(self, item: ImageInput) -> np.ndarray:
        """One input -> uint8 (H, W, 3) at the contract's size (decoded, oriented, RGB, resized).

        Inputs: a path; the bytes of an encoded image file; a PIL image; a uint8 array (H, W, 3), (H, W) or (H, W, 4).
        """
        return input_pixels(item, self.contract, max_pixels=self.max_pixels)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) images at the contract size -> the model's raw (N, classes) output."""
        return self._forward_split(self.model_input.from_pixels(images))

    def forward(self, inputs: np.ndarray) -> np.ndarray:
        """Model-ready inputs -> the model's raw (N, classes) output: normalised float32 (N, 3, H, W) for a float-form
        model (cast to its input type), uint8 (N, H, W, 3) pixels for a pixel-form one."""
        return self._forward_split(self.model_input.coerce(inputs))

    def close(self) -> None:
        """Stop the thread pool (a later call starts a new one); call it once the other calls have returned."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Classifier({str(self.path)!r}, provider={self.provider!r}, classes={self.contract.num_classes})"

    # -- internals ------------------------------------------------------------------------------------------------

    def _pixels(self, images: Sequence[Image.Image | np.ndarray] | np.ndarray) -> np.ndarray:
        """Decoded images -> uint8 (n, H, W, 3) at the contract size; a batch already that size is used as it is."""
        height, width = self.contract.image_size
        if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.shape[1:] == (height, width, 3):
            return images
        for image in images:
            if not isinstance(image, Image.Image | np.ndarray):
                raise TypeError(
                    f"classify_batch takes decoded images (PIL images or uint8 arrays), got a {type(image).__name__}; "
                    "pass paths and bytes to predict"
                )
        if len(images) == 0:
            return np.zeros((0, height, width, 3), dtype=np.uint8)
        return np.stack([self.prepare(image) for image in images])

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
        inputs = self.model_input.from_pixels(images)
        return _PreparedChunk(entries, inputs, self._forward_whole(inputs) if run and len(inputs) else None)

    def _forward_once(self, inputs: np.ndarray) -> np.ndarray:
        (output,) = self.session.run([self.io.output_name], {self.io.input_name: inputs})
        output = np.asarray(output)
        if output.ndim != 2 or output.shape != (len(inputs), self.contract.num_classes):
            raise ModelError(
                f"{self.path}: model output has shape {output.shape}, expected ({len(inputs)}, "
                f"{self.contract.num_classes})"
            )
        return output

    def _forward_whole(self, inputs: np.ndarray) -> np.ndarray:
        """All of ``inputs`` in the calling thread: one session run, or whole batches of a fixed-batch model."""
        fixed = self.io.fixed_batch_size
        if fixed is None:
            return self._forward_once(inputs)
        # A model exported with a fixed batch size: run in chunks of exactly that size, padding the last one.
        return forward_in_batches(self._forward_once, inputs, fixed, pad=True)

    def _forward_split(self, inputs: np.ndarray) -> np.ndarray:
        """``inputs`` split between the streams, each share run by a pool thread (one share: the calling thread)."""
        bounds = split_bounds(len(inputs), self.streams, self.io.fixed_batch_size or 1)
        if len(bounds) < 2:
            return self._forward_whole(inputs)
        pool = self._decode_pool()
        futures = [pool.submit(self._forward_whole, inputs[start:stop]) for start, stop in bounds]
        return np.concatenate([future.result() for future in futures])

    def _chunk_scores(self, chunks: list[_PreparedChunk]) -> np.ndarray:
        """The model's scores for the decoded images of ``chunks``, run by the pool threads or here."""
        ran = [chunk.scores for chunk in chunks if chunk.scores is not None]
        if ran:
            return np.concatenate(ran)
        inputs = [chunk.inputs for chunk in chunks if len(chunk.inputs)]
        if not inputs:
            return np.zeros((0, self.contract.num_classes), dtype=np.float32)
        return self._forward_split(np.concatenate(inputs))

    def _decode_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="cifar-decode")
            return self._pool

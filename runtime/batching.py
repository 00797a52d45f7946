"""The one batching loop: a forward function over float32 NCHW inputs, run in bounded batches."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Forward = Callable[[np.ndarray], np.ndarray]


def run_in_batches(forward: Forward, inputs: np.ndarray, batch_size: int, *, pad: bool = False) -> np.ndarray:
    """Concatenated ``forward`` outputs over ``inputs`` in batches of ``batch_size``.

    ``pad``: every call gets exactly ``batch_size`` rows (a model exported with a fixed batch axis); the last batch
    is zero-padded and its padding rows dropped from the result.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    outputs = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        rows = len(batch)
        if pad and rows < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - rows, *batch.shape[1:]), batch.dtype)])
        outputs.append(np.asarray(forward(batch))[:rows])
    if not outputs:
        return np.zeros((0,), dtype=np.float32)
    return np.concatenate(outputs)

"""Keep third-party tools' chatter (progress prints, log records, deprecation warnings) off the user's terminal."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator

_LOGGERS = ("", "torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir", "onnxruntime")


@contextlib.contextmanager
def quiet_tools() -> Iterator[None]:
    """Silence stdout, warnings and log records below ERROR for the duration; errors still raise as usual."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, previous, strict=True):
            logger.setLevel(level)

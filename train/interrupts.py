"""Ctrl-C during training: the first SIGINT (or SIGTERM, which job schedulers send before killing a job) asks the
loop to stop after the current step (it then saves and exits 130); a second one aborts at once, which is still safe
because every file is written atomically."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager that turns the first SIGINT/SIGTERM into a flag the training loop polls after every step."""

    def __init__(self, on_first_signal: Callable[[], None] | None = None) -> None:
        self.requested = False
        self._on_first_signal = on_first_signal
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        # Signal handlers can only be installed from the main thread; elsewhere Ctrl-C keeps its default meaning.
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in STOP_SIGNALS}
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)  # type: ignore[arg-type]
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self._on_first_signal is not None:
            self._on_first_signal()

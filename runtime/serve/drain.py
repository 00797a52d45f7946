"""uvicorn's server with signal handlers of cifar-serve's own: SIGTERM or SIGINT starts a graceful shutdown (uvicorn
closes the listening sockets, lets every accepted request finish within its graceful-shutdown timeout) after
``on_signal`` has run, and, unlike uvicorn's handlers, does not re-raise the signal afterwards: the process decides
its own exit status. A second signal stops waiting for open requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator

import uvicorn

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, on_signal: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_signal = on_signal

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for number in SIGNALS:
            loop.add_signal_handler(number, self.drain)
        try:
            yield
        finally:
            for number in SIGNALS:
                loop.remove_signal_handler(number)

    def drain(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.on_signal()
        self.should_exit = True

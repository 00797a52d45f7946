"""cifar-serve's Prometheus metrics (``GET /metrics``), in a registry of their own: requests by route and outcome,
time queued and computing, batch sizes, requests in flight and jobs queued.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    """The metrics of one server; also the batcher's observer (``batch_ran``, ``queued``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cifar_serve_requests",
            "HTTP requests answered, by route and status code",
            ["route", "status"],
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "cifar_serve_queue_seconds",
            "Time a request waited in the batching queue",
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.compute_seconds = Histogram(
            "cifar_serve_compute_seconds", "Time a model call took", buckets=_SECONDS, registry=self.registry
        )
        self.batch_size = Histogram(
            "cifar_serve_batch_size", "Items per model call", buckets=_BATCH_SIZES, registry=self.registry
        )
        self.in_flight = Gauge("cifar_serve_in_flight", "Requests being answered", registry=self.registry)
        self.queued_jobs = Gauge("cifar_serve_queued", "Requests waiting in the batching queue", registry=self.registry)

    def batch_ran(self, size: int, queue_seconds: list[float], compute_seconds: float) -> None:
        self.batch_size.observe(size)
        self.compute_seconds.observe(compute_seconds)
        for seconds in queue_seconds:
            self.queue_seconds.observe(seconds)

    def queued(self, jobs: int) -> None:
        self.queued_jobs.set(jobs)

    def answered(self, route: str, status: int) -> None:
        self.requests.labels(route=route, status=str(status)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

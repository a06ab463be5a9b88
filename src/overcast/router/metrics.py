"""The data plane's Prometheus metrics, in a registry of its own (one per ProxyServer), so
tests and several servers in one process never collide; the status server exposes it.

The two metrics every request updates (requests by status class, request durations) are plain
numbers turned into metric families when the registry is collected: a prometheus_client child
takes a lock per increment, three times a request."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class _RequestMetrics(Collector):
    """overcast_router_requests (counter, by status class) and
    overcast_router_request_seconds (histogram)."""

    def __init__(self) -> None:
        self.by_class = [0] * len(STATUS_CLASSES)
        # Observations per bucket (not cumulative); the last one is +Inf.
        self.buckets = [0] * (len(_BUCKETS) + 1)
        self.seconds = 0.0

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "overcast_router_requests",
            "Requests answered, by status class (proxied or answered by the router)",
            labels=["status_class"],
        )
        for status_class, count in zip(STATUS_CLASSES, self.by_class, strict=True):
            requests.add_metric([status_class], count)
        yield requests
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*_BUCKETS, float("inf")), self.buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "overcast_router_request_seconds",
            "Time from a request's first byte to its response's last",
            buckets=buckets,
            sum_value=self.seconds,
        )


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._requests = _RequestMetrics()
        self.registry.register(self._requests)
        self._by_class = self._requests.by_class
        self._buckets = self._requests.buckets
        self.router_answers = Counter(
            "overcast_router_answers",
            "Requests the router answered itself, by X-Cf-Routererror reason",
            ["reason"],
            registry=self.registry,
        )
        self.backend_errors = Counter(
            "overcast_router_backend_errors",
            "Failures talking to endpoints, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.open_connections = Gauge(
            "overcast_router_open_connections",
            "Client connections open",
            registry=self.registry,
        )
        self.backend_connections = Gauge(
            "overcast_router_backend_connections",
            "Connections to endpoints open (in use or idle in a pool)",
            registry=self.registry,
        )
        self.websockets = Gauge(
            "overcast_router_websocket_connections",
            "WebSocket (upgraded) connections being relayed",
            registry=self.registry,
        )

    def request(self, status: int, seconds: float) -> None:
        index = status // 100 - 1
        if 0 <= index < 5:
            self._by_class[index] += 1
        self._buckets[bisect_left(_BUCKETS, seconds)] += 1  # le: bound included
        self._requests.seconds += seconds

"""The data plane's Prometheus metrics, in a registry of its own (one per ProxyServer), so
tests and several servers in one process never collide; the status server exposes it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        requests = Counter(
            "overcast_router_requests",
            "Requests answered, by status class (proxied or answered by the router)",
            ["status_class"],
            registry=self.registry,
        )
        self._by_class = [requests.labels(status_class) for status_class in STATUS_CLASSES]
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
        self.request_seconds = Histogram(
            "overcast_router_request_seconds",
            "Time from a request's first byte to its response's last",
            buckets=_BUCKETS,
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
            self._by_class[index].inc()
        self.request_seconds.observe(seconds)

"""The router's status port (overcast.core.status): `GET /health` (200 once ready, else 503)
and `GET /metrics` (Prometheus text: the data plane's metrics and the route table's size)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from overcast.core.status import StatusServer

if TYPE_CHECKING:
    from overcast.router.service import RouterService


class _TableCollector(Collector):
    def __init__(self, service: RouterService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        table = self.service.table
        yield GaugeMetricFamily(
            "overcast_router_routes", "Routes (host and path) with endpoints", len(table.uris())
        )
        yield GaugeMetricFamily(
            "overcast_router_endpoints", "Endpoints in the route table", table.endpoint_count()
        )
        yield GaugeMetricFamily(
            "overcast_router_ready",
            "1 once a full registration round was heard",
            1 if self.service.ready else 0,
        )
        yield GaugeMetricFamily(
            "overcast_router_pruning_suspended",
            "1 while the bus is down",
            1 if table.pruning_suspended else 0,
        )
        yield CounterMetricFamily(
            "overcast_router_registrations", "Registrations applied", self.service.registrations
        )
        yield CounterMetricFamily(
            "overcast_router_unregistrations",
            "Unregistrations applied",
            self.service.unregistrations,
        )
        yield CounterMetricFamily(
            "overcast_router_dropped_log_lines",
            "RTR lines dropped (bus slow or down)",
            self.service.dropped_log_lines,
        )


def status_server(service: RouterService) -> StatusServer:
    """The router's status port: ready once a registration round was heard; the route
    table's and the data plane's metrics."""
    registry = CollectorRegistry()
    registry.register(_TableCollector(service))

    def metrics() -> bytes:
        return generate_latest(registry) + generate_latest(service.proxy.registry)

    return StatusServer(lambda: service.ready, metrics)

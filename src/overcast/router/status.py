"""The router's status port: `GET /health` (200 once ready, else 503) and `GET /metrics`
(Prometheus text: the data plane's metrics and the route table's size). Apart from the apps'
traffic so that a load balancer's checks and a scraper never compete with it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from overcast.core.logging import get_logger

if TYPE_CHECKING:
    from overcast.router.service import RouterService

log = get_logger(__name__)

MAX_REQUEST_BYTES = 8192
READ_TIMEOUT_SECONDS = 5.0


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


class StatusServer:
    def __init__(self, service: RouterService) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.registry.register(_TableCollector(service))
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def metrics(self) -> bytes:
        return generate_latest(self.registry) + generate_latest(self.service.proxy.registry)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_SECONDS)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target = [*request_line.split(" "), "", ""][:2]
            status, kind, body = self._answer(method, target.split("?", 1)[0])
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/health":
            if self.service.ready:
                return "200 OK", "text/plain", b"ok\n"
            return "503 Service Unavailable", "text/plain", b"not ready\n"
        if path == "/metrics":
            return "200 OK", "text/plain; version=0.0.4; charset=utf-8", self.metrics()
        return "404 Not Found", "text/plain", b"/health or /metrics\n"

"""The health service's Prometheus metrics: convergence runs, actions by reason, detection
latency, the freshness of desired state and what it sees of the cells."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from overcast.core.status import StatusServer
from overcast.health.service import HealthService


class _HealthCollector(Collector):
    def __init__(self, service: HealthService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        counters = self.service.counters
        status = self.service.status()
        yield CounterMetricFamily(
            "overcast_health_converge_runs", "Convergence runs", counters.converge_runs
        )
        for name, counts, what in (
            ("overcast_health_starts", counters.starts_by_reason, "Starts asked and accepted"),
            ("overcast_health_stops", counters.stops_by_reason, "Stops asked"),
            (
                "overcast_health_refused",
                counters.refused,
                "Starts and stops the controller refused, by reason",
            ),
        ):
            family = CounterMetricFamily(name, what, labels=["reason"])
            for reason, count in sorted(counts.items()):
                family.add_metric([reason], count)
            yield family
        yield CounterMetricFamily(
            "overcast_health_crashes_reported", "Crashes reported", counters.crashes_reported
        )
        yield CounterMetricFamily(
            "overcast_health_desired_failures",
            "Failed fetches of desired state",
            counters.desired_failures,
        )
        latencies = counters.detection_latencies
        yield SummaryMetricFamily(
            "overcast_health_detection_latency_seconds",
            "From hearing a crash to asking for its replacement (the last 1,000)",
            count_value=len(latencies),
            sum_value=sum(latencies),
        )
        yield GaugeMetricFamily(
            "overcast_health_desired_fresh",
            "1 while desired state is fresh enough to act on",
            1 if status["freshness"] == "FRESH" else 0,
        )
        yield GaugeMetricFamily("overcast_health_cells", "Cells heard", status["cells"])
        yield GaugeMetricFamily("overcast_health_lost_cells", "Cells lost", status["lost_cells"])
        yield GaugeMetricFamily(
            "overcast_health_waiting_restarts",
            "Crashed instances waiting for their restart time",
            status["waiting_restarts"],
        )


def health_status_server(service: HealthService) -> StatusServer:
    """Ready once desired state was fetched and a heartbeat round heard."""
    registry = CollectorRegistry()
    registry.register(_HealthCollector(service))
    return StatusServer(lambda: service.ready, lambda: generate_latest(registry))

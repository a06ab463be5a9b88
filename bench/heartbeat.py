"""How big a cell heartbeat is on the bus and how long it takes to build and to read.

Run from the repository root: `.venv/bin/python bench/heartbeat.py`. Prints figures only.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable

from overcast.bus.base import MAX_PAYLOAD_BYTES, decode_payload, encode_payload
from overcast.bus.messages import Heartbeat, InstanceReport, Resources
from overcast.models.instances import CellState, InstanceState

ITERATIONS = 200
NOW = 1_767_225_600.0  # a fixed Unix time, so every run encodes the same bytes


def _guid(n: int, kind: str) -> str:
    # Deterministic guids of the real length and shape.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{n}"))


def report(n: int) -> InstanceReport:
    # Most instances run; a few start or have crashed (those carry a reason and detail).
    crashed = n % 40 == 0
    state = InstanceState.CRASHED if crashed else InstanceState.RUNNING
    if n % 25 == 1:
        state = InstanceState.STARTING
    return InstanceReport(
        instance_guid=_guid(n, "instance"),
        process_guid=_guid(n // 3, "process"),
        process_type="web",
        app_guid=_guid(n // 3, "app"),
        index=n % 3,
        version=_guid(n // 3, "version")[:8],
        state=state,
        since=NOW - 3600.0 - n,
        host="10.0.4.17",
        port=None if crashed else 61000 + n,
        memory_mb=(256, 512, 1024)[n % 3],
        disk_mb=1024,
        seq=10_000 + n,
        reason="CRASHED" if crashed else None,
        exit_status=1 if crashed else None,
        detail="exited with status 1" if crashed else None,
        crash_count=2 if crashed else 0,
    )


def heartbeat(instances: int) -> Heartbeat:
    reports = [report(n) for n in range(instances)]
    return Heartbeat(
        cell_id="cell-z1-017",
        zone="z1",
        state=CellState.ENABLED,
        host="10.0.4.17",
        stacks=["cflinuxfs4"],
        tags=["ssd"],
        capacity=Resources(memory_mb=262_144, disk_mb=1_048_576, containers=max(250, instances)),
        allocated=Resources(
            memory_mb=sum(r.memory_mb for r in reports),
            disk_mb=sum(r.disk_mb for r in reports),
            containers=instances,
        ),
        instances=reports,
        seq=10_000 + instances,
        interval_seconds=5.0,
        sent_at=NOW,
        started_at=NOW - 86_400.0,
    )


def median_ms(action: Callable[[], object]) -> float:
    times = []
    for _ in range(ITERATIONS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def row(instances: int) -> str:
    beat = heartbeat(instances)
    wire = beat.wire()
    try:
        raw = encode_payload(wire)
    except ValueError:
        # Over the bus payload limit, so it could never be sent: the size is still worth
        # knowing (encoded the way encode_payload does).
        size = len(json.dumps(wire, separators=(",", ":")))
        share = size / MAX_PAYLOAD_BYTES
        return f"{instances:>9} {size:>10,} {share:>7.0%} {'over the bus payload limit':>29}"
    encode = median_ms(lambda: encode_payload(beat.wire()))
    parse = median_ms(lambda: Heartbeat.parse(decode_payload(raw)))
    share = len(raw) / MAX_PAYLOAD_BYTES
    return f"{instances:>9} {len(raw):>10,} {share:>7.0%} {encode:>14.3f} {parse:>14.3f}"


def main() -> None:
    print(f"Heartbeat on the bus: median of {ITERATIONS} iterations")
    print(f"Bus payload limit: {MAX_PAYLOAD_BYTES:,} bytes")
    print(f"{'instances':>9} {'bytes':>10} {'limit':>7} {'serialise ms':>14} {'parse ms':>14}")
    for instances in (25, 250, 1_000, 3_000):
        print(row(instances))


if __name__ == "__main__":
    main()

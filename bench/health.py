"""Crash -> replacement answering through the router, over KILLS kills, with a real controller,
two real cells, a router and the health service on the embedded bus (as in the micro cloud).

Each round SIGKILLs the instance at index 1 of a two-instance app (the hello test app, a fast
booting Python server) and measures, from the kill, when a new instance at index 1 answers
through the router. An index restarts at once for its first three crashes and then backs off
(Diego's policy), so the kills go round APPS apps, three each. Printed: p50/p95/max, and the
part of it the health service took to ask for the replacement (its detection latency).
Goal (issue 7): p95 under 2 s.
Run: .venv/bin/python bench/health.py
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from overcast.core.logging import configure_logging
from overcast.testing.platform import memory_buses, start_platform

APPS = 7
KILLS_PER_APP = 3
DOMAIN = "apps.localhost"


async def _answering(http: httpx.AsyncClient, host: str, not_guid: str, deadline: float) -> float:
    while time.perf_counter() < deadline:
        try:
            response = await http.get("/", headers={"Host": host})
            body = response.json() if response.status_code == 200 else {}
            if body.get("index") == "1" and body.get("guid") != not_guid:
                return time.perf_counter()
        except (httpx.HTTPError, ValueError):
            pass
        await asyncio.sleep(0.005)
    raise RuntimeError("no replacement answered within the deadline")


async def main() -> None:
    configure_logging("warning", "console")
    root = Path(tempfile.mkdtemp(prefix="overcast-bench-health-"))
    platform = await start_platform(root, make_bus=memory_buses())
    try:
        await platform.add_router()
        await platform.add_cell("cell-a", zone="z1")
        await platform.add_cell("cell-b", zone="z2")
        await platform.wait_for_cells(2)
        await platform.wait_router_ready()
        health = await platform.add_health()
        space = await platform.space()
        apps = []
        for number in range(APPS):
            name = f"phoenix{number}"
            app = await platform.app_with_droplet(space, name)
            await platform.map_route(app["guid"], space, name)
            await platform.scale(app["guid"], 2)
            await platform.post(f"/v3/apps/{app['guid']}/actions/start")
            apps.append((app["guid"], f"{name}.{DOMAIN}"))
        recoveries: list[float] = []
        async with httpx.AsyncClient(base_url=platform.router_url(), timeout=5) as http:
            for app_guid, host in apps:
                await platform.wait_running(app_guid, 2)
                await _answering(http, host, "", time.perf_counter() + 20)
            for _ in range(KILLS_PER_APP):
                for app_guid, host in apps:
                    killed = time.perf_counter()
                    victim = platform.kill_instance_at(app_guid, 1)
                    answered = await _answering(http, host, victim.guid, killed + 60)
                    recoveries.append(answered - killed)
                    await platform.wait_running(app_guid, 2)
                    await asyncio.sleep(0.2)
        detections = health.counters.detection_latencies
        ordered = sorted(recoveries)
        p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
        kills = len(recoveries)
        print(f"Crash -> replacement answering through the router ({kills} kills, seconds)")
        print(f"  p50 {statistics.median(ordered):.2f}   p95 {p95:.2f}   max {ordered[-1]:.2f}")
        print(
            f"  of which crash heard -> replacement asked: median "
            f"{statistics.median(detections):.3f} (over {len(detections)})"
        )
        print("  goal: p95 under 2 s for a fast-booting app")
    finally:
        await platform.close()


if __name__ == "__main__":
    asyncio.run(main())

"""Issue 7's faults, with real processes: a controller, two real cells and a router on the memory
bus and on NATS, and the health service acting on the controller in process (as in the micro
cloud). A killed instance is replaced and routable while the other keeps answering; an app that
exits at start is restarted three times at once and then backs off, CRASHED with its reason."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import httpx

from overcast.testing.platform import Platform, eventually

DOMAIN = "apps.localhost"


async def _app(platform: Platform, name: str, instances: int = 2) -> dict[str, Any]:
    space = await platform.space()
    app = await platform.app_with_droplet(space, name)
    await platform.map_route(app["guid"], space, name)
    await platform.scale(app["guid"], instances)
    await platform.post(f"/v3/apps/{app['guid']}/actions/start")
    await platform.wait_running(app["guid"], instances)
    return app


async def _get(platform: Platform, host: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=platform.router_url(), timeout=10) as http:
        return await http.get("/", headers={"Host": f"{host}.{DOMAIN}"})


async def test_a_killed_instance_is_replaced_and_the_other_keeps_answering(
    routed: Platform,
) -> None:
    await routed.add_health()
    app = await _app(routed, "phoenix")

    async def both_answer() -> bool:
        seen = {(await _get(routed, "phoenix")).json()["index"] for _ in range(8)}
        return seen == {"0", "1"}

    await eventually(both_answer, within=20)
    statuses: list[int] = []
    stop = asyncio.Event()

    async def load() -> None:
        async with httpx.AsyncClient(base_url=routed.router_url(), timeout=10) as http:
            while not stop.is_set():
                response = await http.get("/", headers={"Host": f"phoenix.{DOMAIN}"})
                statuses.append(response.status_code)

    runner = asyncio.create_task(load())
    await asyncio.sleep(0.3)
    victim = routed.kill_instance_at(app["guid"], 1)

    async def replaced() -> list[dict[str, Any]] | None:
        stats = await routed.stats(app["guid"])
        running = [entry for entry in stats if entry["state"] == "RUNNING"]
        fresh = [entry for entry in running if entry.get("instance_guid") != victim.guid]
        return stats if len(running) == 2 and len(fresh) == 2 else None

    await eventually(replaced, within=20)
    await eventually(both_answer, within=10)
    stop.set()
    await runner
    # At most the one request in flight to the dying instance fails (never retried once sent).
    failed = [status for status in statuses if status != 200]
    assert len(failed) <= 1 and set(failed) <= {502}, collections.Counter(statuses)
    events = await routed.get(
        f"/v3/audit_events?types=audit.app.process.crash&target_guids={app['guid']}"
    )
    (crash,) = events["resources"]
    assert crash["data"]["exit_status"] == 137 or "signal" in str(crash["data"])
    health = routed.health
    assert health is not None and health.counters.starts_by_reason["CRASHED"] == 1


async def test_an_app_that_exits_at_start_backs_off(platform: Platform) -> None:
    await platform.add_health()
    space = await platform.space()
    app = await platform.app_with_droplet(space, "quitter")
    web = await platform.get(f"/v3/apps/{app['guid']}/processes/web")
    await platform.request(
        "PATCH",
        f"/v3/processes/{web['guid']}",
        json={"command": "echo giving up; exit 3", "health_check": {"type": "process"}},
    )
    await platform.post(f"/v3/apps/{app['guid']}/actions/start")

    async def backing_off() -> dict[str, Any] | None:
        (entry,) = await platform.stats(app["guid"])
        waiting = entry["state"] == "CRASHED" and entry.get("next_restart_at")
        return entry if waiting and entry.get("crash_count", 0) >= 4 else None

    entry = await eventually(backing_off, within=30)
    # Three immediate restarts (crashes 1-3), then the fourth waits 30 s (with jitter).
    assert entry["crash_count"] == 4
    assert entry["crash_reason"] == "CRASHED"
    assert "exited with status 3" in (entry.get("details") or ""), entry

    async def crash_events() -> list[dict[str, Any]]:
        path = f"/v3/audit_events?types=audit.app.process.crash&target_guids={app['guid']}"
        resources: list[dict[str, Any]] = (await platform.get(path))["resources"]
        return resources

    # The stats show a crash as soon as the controller hears of it; its event is written
    # moments later in the same request.
    async def all_four_recorded() -> bool:
        return len(await crash_events()) >= 4

    await eventually(all_four_recorded, within=5)
    # No busy loop: nothing more happens while it waits.
    await asyncio.sleep(2)
    (later,) = await platform.stats(app["guid"])
    assert later["crash_count"] == 4 and later["state"] == "CRASHED"
    assert len(await crash_events()) == 4

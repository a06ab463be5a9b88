"""Issue 5's "done when", with real processes: a controller with its API on loopback, two real
cells, a real router, on the memory bus and on NATS. Routes are made through the API; cells
register them when instances are RUNNING; requests go through the router's port with the
route's Host."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import httpx
import websockets

from overcast.testing.platform import Platform, eventually, nats_buses, start_platform

DOMAIN = "apps.localhost"


async def _routed_app(
    platform: Platform, name: str, instances: int = 2, *, space: str | None = None
) -> dict[str, Any]:
    space_guid = space or await platform.space()
    app = await platform.app_with_droplet(space_guid, name)
    await platform.map_route(app["guid"], space_guid, name)
    await platform.scale(app["guid"], instances)
    await platform.post(f"/v3/apps/{app['guid']}/actions/start")
    await platform.wait_running(app["guid"], instances)
    await _until_every_index_answers(platform, name, instances)
    return app


async def _get(platform: Platform, host: str, path: str = "/", **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=platform.router_url(), timeout=10) as http:
        return await http.get(path, headers={"Host": f"{host}.{DOMAIN}"}, **kwargs)


async def _until_every_index_answers(platform: Platform, host: str, count: int) -> None:
    async def all_seen() -> bool:
        seen = set()
        for _ in range(count * 4):
            response = await _get(platform, host)
            if response.status_code == 200:
                seen.add(response.json()["index"])
        return len(seen) == count

    await eventually(all_seen, within=20)


async def test_two_instances_share_one_route(routed: Platform) -> None:
    await _routed_app(routed, "shared")
    counts: collections.Counter[str] = collections.Counter()
    async with httpx.AsyncClient(base_url=routed.router_url(), timeout=10) as http:
        for _ in range(40):
            response = await http.get("/", headers={"Host": f"shared.{DOMAIN}"})
            assert response.status_code == 200
            counts[response.json()["index"]] += 1
            headers = response.json()["headers"]
            assert headers["x-forwarded-proto"] == "http"
            assert headers["x-forwarded-for"].endswith("127.0.0.1")
            assert response.headers["x-request-id"] == headers["x-request-id"]
    assert set(counts) == {"0", "1"}
    assert min(counts.values()) >= 15, counts  # round robin: about half each


async def test_unknown_host_is_404(routed: Platform) -> None:
    response = await _get(routed, "nobody")
    assert response.status_code == 404
    assert response.headers["x-cf-routererror"] == "unknown_route"


async def test_killing_an_instance_loses_no_request(routed: Platform) -> None:
    app = await _routed_app(routed, "sturdy")
    statuses: list[int] = []
    stop = asyncio.Event()

    async def load() -> None:
        async with httpx.AsyncClient(base_url=routed.router_url(), timeout=10) as http:
            while not stop.is_set():
                response = await http.get("/", headers={"Host": f"sturdy.{DOMAIN}"})
                statuses.append(response.status_code)

    runner = asyncio.create_task(load())
    await asyncio.sleep(0.5)
    routed.kill_instance_at(app["guid"], 1)
    await asyncio.sleep(2.0)
    stop.set()
    await runner
    assert len(statuses) > 20
    # One request may have been in flight to the instance when it died: it is answered 502,
    # since nothing is retried once sent. Every other request succeeds.
    failed = [status for status in statuses if status != 200]
    assert len(failed) <= 1 and set(failed) <= {502}, collections.Counter(statuses)
    # The dead instance is no longer routed to.
    answers = [await _get(routed, "sturdy") for _ in range(10)]
    assert {response.status_code for response in answers} == {200}
    assert {response.json()["index"] for response in answers} == {"0"}, [
        response.text for response in answers
    ]


async def test_a_stopped_instance_gets_no_traffic(routed: Platform) -> None:
    app = await _routed_app(routed, "shrinking")
    await routed.scale(app["guid"], 1)
    await routed.wait_running(app["guid"], 1)
    table = routed.routers["router"].table

    async def unregistered() -> bool:
        return len(table.endpoints_of(f"shrinking.{DOMAIN}")) == 1

    await eventually(unregistered, within=5)
    answers = [(await _get(routed, "shrinking")) for _ in range(20)]
    assert {response.status_code for response in answers} == {200}
    assert {response.json()["index"] for response in answers} == {"0"}


async def test_websocket_echo_through_the_router(routed: Platform) -> None:
    await _routed_app(routed, "sockets", instances=1)
    port = routed.router_ports["router"].http
    # The route's name in the URL (the Host header), the router's address to connect to.
    async with websockets.connect(
        f"ws://sockets.{DOMAIN}:{port}/echo", host="127.0.0.1", port=port
    ) as socket_:
        for message in ("hello", "x" * 70_000, "bye"):
            await socket_.send(message)
            assert await socket_.recv() == message


async def test_route_mapping_changes_reach_running_instances(routed: Platform) -> None:
    space = await routed.space()
    app = await _routed_app(routed, "remapped", instances=1, space=space)
    route = await routed.map_route(app["guid"], space, "second")

    async def second_answers() -> bool:
        return (await _get(routed, "second")).status_code == 200

    await eventually(second_answers, within=10)
    await routed.request("DELETE", f"/v3/routes/{route['guid']}")

    async def second_gone() -> bool:
        return (await _get(routed, "second")).status_code == 404

    await eventually(second_gone, within=10)
    assert (await _get(routed, "remapped")).status_code == 200


async def test_router_restart_has_no_404_window(routed: Platform) -> None:
    await _routed_app(routed, "steady")
    port = routed.router_ports["router"].http
    statuses: list[int | str] = []
    stop = asyncio.Event()

    async def load() -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            while not stop.is_set():
                try:
                    response = await http.get(
                        f"http://127.0.0.1:{port}/", headers={"Host": f"steady.{DOMAIN}"}
                    )
                    statuses.append(response.status_code)
                except httpx.TransportError:
                    statuses.append("refused")
                    await asyncio.sleep(0.01)

    runner = asyncio.create_task(load())
    await asyncio.sleep(0.3)
    await routed.stop_router()
    await routed.add_router(port=port)
    await routed.wait_router_ready()
    await asyncio.sleep(0.5)
    stop.set()
    await runner
    assert 404 not in statuses, collections.Counter(statuses)
    assert statuses[-1] == 200


async def test_request_smuggling_is_refused(routed: Platform) -> None:
    await _routed_app(routed, "strict", instances=1)
    port = routed.router_ports["router"].http
    host = f"strict.{DOMAIN}"
    cases = [
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked"
        "\r\n\r\n0\r\n\r\n",
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
        f"GET / HTTP/1.1\r\nHost: {host}\r\nX-Folded: a\r\n b\r\n\r\n",
    ]
    for raw in cases:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        assert status_line.split()[1] == b"400", (raw, status_line)


async def test_access_lines_reach_the_apps_logs(routed: Platform) -> None:
    app = await _routed_app(routed, "logged", instances=1)
    await _get(routed, "logged", "/hello?x=1")

    async def rtr_line() -> list[str]:
        body = await routed.get(f"/v3/x/apps/{app['guid']}/logs?limit=1000")
        return [
            e["line"] for e in body["resources"] if e["source"] == "RTR" and "/hello" in e["line"]
        ]

    lines = await eventually(rtr_line, within=10)
    assert "200" in lines[0] and "vcap_request_id" in lines[0]


async def test_health_and_metrics_on_the_status_port(routed: Platform) -> None:
    status = routed.router_ports["router"].status
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{status}", timeout=5) as http:
        assert (await http.get("/health")).status_code == 200
        metrics = (await http.get("/metrics")).text
    assert "overcast_router_endpoints" in metrics


async def test_routes_keep_answering_with_the_bus_stopped_for_a_minute(
    tmp_path: Path, nats_server: Any
) -> None:
    platform = await start_platform(tmp_path, make_bus=nats_buses(nats_server.url))
    try:
        await platform.add_router()
        await platform.add_cell("cell-a")
        await platform.wait_for_cells(1)
        await platform.wait_router_ready()
        await _routed_app(platform, "outage", instances=1)
        nats_server.stop()
        try:
            failures = 0
            for _ in range(60):
                response = await _get(platform, "outage")
                failures += response.status_code != 200
                await asyncio.sleep(1.0)
            assert failures == 0
            assert platform.routers["router"].table.pruning_suspended
        finally:
            nats_server.start()

        async def resumed() -> bool:
            return not platform.routers["router"].table.pruning_suspended

        await eventually(resumed, within=30)
        assert (await _get(platform, "outage")).status_code == 200
    finally:
        await platform.close()


async def test_a_router_beside_its_cells_is_ready_once_their_round_is_heard(
    routed: Platform,
) -> None:
    """The micro cloud's case: the cells are known, so the router does not wait a register
    interval (here ready_after_seconds is raised to an hour to show it is not what acts)."""
    await _routed_app(routed, "prompt")
    port = routed.router_ports["router"].http
    await routed.stop_router()
    router = await routed.add_router(port=port, ready_after_seconds=3600)
    assert not router.ready
    sent = sum([await cell.register_routes() for cell in routed.cells.values()])
    assert sent == 2
    await router.ready_once_heard(sent, within=10)
    assert router.ready
    assert (await _get(routed, "prompt")).status_code == 200

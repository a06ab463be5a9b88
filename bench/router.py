"""The router's data plane against its references, in one run, with wrk on loopback.

1. Throughput and latency of a fast backend (HAProxy answering a fixed 200 itself):
   direct to the backend, through the built-in router (its own process, uvloop), and through
   two hand-configured HAProxies (one thread each, like the router's one event loop): a bare
   proxy, and one doing the router's per-request work too (X-Forwarded-For and -Proto, an
   X-Request-Id generated and returned, an access line per request to a file). wrk: 1 thread,
   32 connections, keep-alive, DURATION seconds each. Goals (issue 5): at least half of
   HAProxy's requests/s, under 3 ms added p99.
2. Registration latency, on a real platform (controller, cell, router on the embedded bus):
   from an instance becoming RUNNING to its route answering through the router, and from its
   unregister (the instance leaving RUNNING) to the last request it served.

Needs wrk and haproxy (Debian packages; `./dev bench` installs them).
Run: .venv/bin/python bench/router.py
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from overcast.bus import subjects
from overcast.bus.base import Message
from overcast.bus.messages import InstanceEvent
from overcast.core.logging import configure_logging
from overcast.testing.platform import Platform, memory_buses, start_platform

HOST = "bench.apps.localhost"
DURATION = 8
CONNECTIONS = 32
REGISTRATION_RUNS = 5
BODY = "hello from the backend"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def haproxy(config: str, root: Path, name: str) -> subprocess.Popen[bytes]:
    path = root / f"{name}.cfg"
    path.write_text(config)
    # `log stdout` lines (the access log of the proxy doing the router's work) go to a file.
    with (root / f"{name}.log").open("wb") as output:
        return subprocess.Popen(["haproxy", "-f", str(path)], stdout=output)


HAPROXY_GLOBAL = """
global
  maxconn 4000
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
"""


def haproxy_doing_the_routers_work(port: int, backend: int) -> str:
    """What the built-in router does to each request, in HAProxy's terms."""
    return (
        f"frontend working\n  bind 127.0.0.1:{port}\n"
        "  log stdout format raw local0\n"
        "  option httplog\n"
        "  option forwardfor\n"
        "  http-request set-header X-Forwarded-Proto http\n"
        "  unique-id-format %{+X}o%ci%cp%fi%fp%Ts%rt%pid\n"
        "  unique-id-header X-Request-Id\n"
        "  http-response set-header X-Request-Id %[unique-id]\n"
        "  default_backend app\n"
        f"backend app\n  http-reuse always\n  server s1 127.0.0.1:{backend}\n"
    )


def wrk(port: int) -> dict[str, float]:
    output = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{DURATION}s",
            "--latency",
            "-H",
            f"Host: {HOST}",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result = {"rps": rps, "non2xx": float(errors.group(1)) if errors else 0.0}
    for label, key in (("50%", "p50"), ("99%", "p99")):
        match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", output)
        assert match, output
        value, unit = float(match.group(1)), match.group(2)
        result[key] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return result


# --- the router in its own process ------------------------------------------------------------


async def serve_router(port: int, backend: int, app_logs: bool) -> None:
    """A RouterService on the embedded bus with one route to `backend`, until killed."""
    from overcast.bus.memory import MemoryBus
    from overcast.cmd.router import tune_gc
    from overcast.core.settings import RouterSection
    from overcast.router.endpoints import Endpoint
    from overcast.router.service import RouterService
    from overcast.router.table import Tag

    bus = MemoryBus(name="bench-router")
    await bus.connect()
    settings = RouterSection(
        port=port,
        status_port=0,
        register_interval_seconds=3600,
        prune_threshold_seconds=7200,
        ready_after_seconds=0,
        app_access_logs=app_logs,
    )
    # As deployed: an access log file and RTR lines; or neither (the data plane alone).
    access_log = Path(tempfile.mkdtemp(prefix="overcast-bench-access-")) / "access.log"
    service = RouterService(settings, bus, access_log=access_log if app_logs else None)
    await service.start()
    tune_gc()  # as `overcast router` does
    service.table.register(
        HOST,
        Endpoint(host="127.0.0.1", port=backend, app_guid="bench"),
        Tag("bench", 1),
        time.monotonic(),  # the service's clock: pruning compares against it
    )
    await asyncio.Event().wait()


# --- registration latency -----------------------------------------------------------------------


async def registration_latency(root: Path) -> tuple[list[float], list[float]]:
    platform = await start_platform(root / "platform", make_bus=memory_buses())
    running_at: dict[str, float] = {}
    left_at: dict[str, float] = {}

    async def on_event(message: Message) -> None:
        event = InstanceEvent.parse(message.data)
        if event.to_state.value == "RUNNING":
            running_at[event.instance.instance_guid] = time.time()
        elif event.from_state.value == "RUNNING":
            left_at[event.instance.instance_guid] = time.time()

    watcher = await platform.make_bus("bench-watcher")
    await watcher.subscribe(subjects.INSTANCE_EVENT, on_event)
    ready: list[float] = []
    drained: list[float] = []
    try:
        await platform.add_router()
        await platform.add_cell("cell-a")
        await platform.wait_for_cells(1)
        await platform.wait_router_ready()
        space = await platform.space()
        app = await platform.app_with_droplet(space, "bench")
        await platform.map_route(app["guid"], space, "bench")
        url = platform.router_url()
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            for _ in range(REGISTRATION_RUNS):
                ready.append(await _time_to_route(platform, http, app["guid"], running_at))
                drained.append(await _time_to_drain(platform, http, app["guid"], left_at))
    finally:
        await watcher.close()
        await platform.close()
    return ready, drained


async def _answers(http: httpx.AsyncClient) -> httpx.Response | None:
    try:
        return await http.get("/", headers={"Host": HOST})
    except httpx.TransportError:
        return None


async def _time_to_route(
    platform: Platform, http: httpx.AsyncClient, app_guid: str, running_at: dict[str, float]
) -> float:
    """Start one instance; seconds from its RUNNING to the first 200 through the router."""
    await platform.scale(app_guid, 1)
    await platform.post(f"/v3/apps/{app_guid}/actions/start")
    while True:
        response = await _answers(http)
        if response is not None and response.status_code == 200:
            answered = time.time()
            guid = response.json()["guid"]
            break
        await asyncio.sleep(0.001)
    return answered - running_at[guid]


async def _time_to_drain(
    platform: Platform, http: httpx.AsyncClient, app_guid: str, left_at: dict[str, float]
) -> float:
    """Stop the app; seconds from its instance leaving RUNNING (the unregister) to the last
    request that instance answered (negative: none after)."""
    await platform.post(f"/v3/apps/{app_guid}/actions/stop")
    last_answer = 0.0
    guid = ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = await _answers(http)
        if response is not None and response.status_code == 200:
            last_answer = time.time()
            guid = response.json()["guid"]
        elif guid and guid in left_at:
            break
        await asyncio.sleep(0.001)
    return last_answer - left_at[guid]


def _row(label: str, *values: str) -> None:
    print(f"  {label:<34}" + "".join(f"{value:>12}" for value in values))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        import uvloop

        uvloop.install()
        asyncio.run(serve_router(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "logs"))
        return
    for tool in ("wrk", "haproxy"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/router.py needs {tool} (apt-get install wrk haproxy)")
    configure_logging("warning", "console")
    root = Path(tempfile.mkdtemp(prefix="overcast-bench-router-"))
    backend, proxy, router, quiet = free_port(), free_port(), free_port(), free_port()
    working = free_port()
    processes = [
        haproxy(
            HAPROXY_GLOBAL
            + f"frontend static\n  bind 127.0.0.1:{backend}\n"
            + f'  http-request return status 200 content-type text/plain string "{BODY}"\n',
            root,
            "backend",
        ),
        haproxy(
            HAPROXY_GLOBAL
            + f"frontend proxy\n  bind 127.0.0.1:{proxy}\n  default_backend app\n"
            + f"backend app\n  http-reuse always\n  server s1 127.0.0.1:{backend}\n",
            root,
            "proxy",
        ),
        haproxy(HAPROXY_GLOBAL + haproxy_doing_the_routers_work(working, backend), root, "working"),
        subprocess.Popen(
            [sys.executable, __file__, "--serve", str(router), str(backend), "logs"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [sys.executable, __file__, "--serve", str(quiet), str(backend), "quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        for port in (backend, proxy, working, router, quiet):
            wait_port(port)
        time.sleep(0.5)
        results = {
            "direct to the backend": wrk(backend),
            "built-in router": wrk(router),
            "built-in router, no access logs": wrk(quiet),
            "hand-configured HAProxy": wrk(proxy),
            "HAProxy doing the router's work": wrk(working),
        }
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
    direct = results["direct to the backend"]
    print(f"Data plane, wrk -t1 -c{CONNECTIONS} -d{DURATION}s, keep-alive (latency in ms)")
    _row("", "req/s", "p50", "p99", "added p99", "non-2xx")
    for label, result in results.items():
        added = result["p99"] - direct["p99"]
        _row(
            label,
            f"{result['rps']:,.0f}",
            f"{result['p50']:.2f}",
            f"{result['p99']:.2f}",
            "-" if result is direct else f"{added:.2f}",
            f"{result['non2xx']:.0f}",
        )
    router_rps = results["built-in router"]["rps"]
    for reference in ("hand-configured HAProxy", "HAProxy doing the router's work"):
        share = router_rps / results[reference]["rps"]
        print(f"  built-in router / {reference}: {share:.0%} of its req/s (goal: at least 50%)")
    logged = len((root / "working.log").read_text().splitlines())
    print(f"  (the HAProxy doing the router's work wrote {logged:,} access lines)")

    ready, drained = asyncio.run(registration_latency(root))
    print(f"\nRegistration (median of {REGISTRATION_RUNS}, ms; every run in parentheses)")
    _show("instance RUNNING -> route answers", ready)
    _show("unregister -> last request served", drained)
    shutil.rmtree(root, ignore_errors=True)


def _show(label: str, values: list[float]) -> None:
    runs = ", ".join(f"{value * 1000:.0f}" for value in values)
    print(f"  {label:<34}{statistics.median(values) * 1000:>8.1f}   ({runs})")


if __name__ == "__main__":
    main()

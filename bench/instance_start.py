"""Time from `start` accepted by a cell to the instance RUNNING, for the stdlib hello app.

Split into cell overhead (accepted -> STARTING: droplet download, checksum, unpack, spawn) and
app boot (STARTING -> RUNNING: the app binding its port, as seen by the readiness probe), and
compared in the same run with the reference: the same app started directly by this script and
polled every 5 ms until it accepts connections.

Run: .venv/bin/python bench/instance_start.py
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from overcast.bus import subjects
from overcast.bus.base import Message
from overcast.bus.memory import MemoryBus
from overcast.bus.messages import (
    Checksum,
    DropletSource,
    HealthCheckSpec,
    InstanceEvent,
    InstanceSpec,
    RpcReply,
    StartInstance,
    StopInstance,
)
from overcast.cell.agent import CellAgent
from overcast.core.logging import configure_logging
from overcast.core.settings import CellSection
from overcast.testing.droplets import build_droplet

RUNS = 10


def _serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))

    class Quiet(handler.func):  # type: ignore[name-defined,misc]
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def direct_boot(app_dir: Path) -> float:
    """Seconds from spawn to the first accepted connection, no platform involved."""
    port = _free_port()
    env = {"PATH": "/usr/bin:/bin", "PORT": str(port), "CF_INSTANCE_IP": "127.0.0.1"}
    started = time.perf_counter()
    process = subprocess.Popen(
        ["/bin/bash", "-c", "python3 app.py"],
        cwd=app_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return time.perf_counter() - started
            time.sleep(0.005)
    finally:
        process.terminate()
        process.wait()


async def cell_runs(
    work: Path, url: str, checksum: str, probe_interval: float
) -> list[tuple[float, float]]:
    bus = MemoryBus(name="bench")
    await bus.connect()
    settings = CellSection(id="bench", heartbeat_interval_seconds=5.0, stop_grace_seconds=2.0)
    agent = CellAgent(settings, bus=bus, work_dir=work / f"cell-{probe_interval}")
    await agent.start()
    moments: dict[str, dict[str, float]] = {}

    async def on_event(message: Message) -> None:
        event = InstanceEvent.parse(message.data)
        moments.setdefault(event.instance.instance_guid, {})[event.to_state.value] = (
            time.perf_counter()
        )

    await bus.subscribe(subjects.INSTANCE_EVENT, on_event)
    results = []
    try:
        for run in range(RUNS):
            guid = f"bench-{probe_interval}-{run}"
            spec = InstanceSpec(
                instance_guid=guid,
                process_guid="process",
                process_type="web",
                index=run,
                version="v1",
                app_guid="app",
                app_name="hello",
                space_guid="space",
                org_guid="org",
                droplet=DropletSource(guid="droplet", url=url, checksum=Checksum(value=checksum)),
                command="python3 app.py",
                memory_mb=64,
                disk_mb=64,
                stack="overcast-linux",
                health_check=HealthCheckSpec(interval_seconds=probe_interval),
            )
            reply = RpcReply.parse(
                (
                    await bus.request(
                        subjects.cell_rpc("bench"), StartInstance(instance=spec).wire()
                    )
                ).data
            )
            accepted = time.perf_counter()
            assert reply.accepted, reply
            while "RUNNING" not in moments.get(guid, {}):
                if "CRASHED" in moments.get(guid, {}):
                    raise RuntimeError(f"instance crashed: {agent.instances()}")
                await asyncio.sleep(0.001)
            seen = moments[guid]
            results.append((seen["STARTING"] - accepted, seen["RUNNING"] - seen["STARTING"]))
            await bus.request(
                subjects.cell_rpc("bench"), StopInstance(instance_guid=guid, version="v1").wire()
            )
    finally:
        await agent.stop(stop_instances=True)
        await bus.close()
    return results


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f}"


async def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        droplet = build_droplet(work / "served" / "droplet.tgz")
        server, base = _serve(work / "served")
        url = f"{base}/droplet.tgz"
        app_dir = work / "direct"
        with tarfile.open(droplet.path) as archive:
            archive.extractall(app_dir, filter="data")
        direct = [direct_boot(app_dir / "app") for _ in range(RUNS)]
        rows = []
        for interval in (0.5, 0.05):
            runs = await cell_runs(work, url, droplet.sha256, interval)
            cold, warm = runs[0], runs[1:]
            rows.append((f"cell, probe every {interval}s (first start)", [cold[0]], [cold[1]]))
            rows.append(
                (
                    f"cell, probe every {interval}s (droplet cached)",
                    [r[0] for r in warm],
                    [r[1] for r in warm],
                )
            )
        server.shutdown()
    version = sys.version.split()[0]
    print(f"Start of the stdlib hello app; median ms of {RUNS} runs (python {version}, ", end="")
    print(f"{os.cpu_count()} cpus)")
    print(f"{'':48} {'cell ovh':>8} {'app boot':>8} {'total':>8}")
    for label, overhead, boot in rows:
        total = [a + b for a, b in zip(overhead, boot, strict=True)]
        print(f"{label:48} {_ms(overhead)} {_ms(boot)} {_ms(total)}")
    print(f"{'direct spawn, polled every 5 ms (reference)':48} {'':8} {_ms(direct)} {_ms(direct)}")


if __name__ == "__main__":
    configure_logging("warning", "console")
    asyncio.run(main())

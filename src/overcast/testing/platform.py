"""A real controller (SQL store, job engine, API on a loopback port) and real cell agents on
one bus, in this process: what the cell integration tests and the benchmarks drive over HTTP.

Cells can also be separate `overcast cell` processes (see CellProcess) when the bus is NATS."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from overcast.bus.base import Bus
from overcast.bus.memory import MemoryBroker, MemoryBus
from overcast.bus.messages import InstanceReport
from overcast.bus.nats import NatsBus
from overcast.cell.agent import CellAgent
from overcast.cell.table import TABLE_FILE, InstanceRecord, read_table
from overcast.cmd.wiring import (
    ApiServer,
    ControllerParts,
    InProcessControllerPort,
    build_controller,
    start_api,
    stop_api,
)
from overcast.core.settings import CellSection, ControllerSettings, RouterSection
from overcast.health.service import HealthOptions, HealthService
from overcast.router.service import RouterPorts, RouterService
from overcast.testing.droplets import BuiltDroplet, build_droplet
from overcast.testing.ports import next_cell_port_range

ADMIN_PASSWORD = "admin-password-for-tests"
# What a push leaves out of a package (as the cf CLI does).
SKIPPED = frozenset({".git", "__pycache__", "node_modules", ".venv"})
_ENTRY = "from overcast.cmd.main import main; main()"

# Routers that hear every registration round quickly (cells adopt the interval they announce).
FAST_ROUTER = {
    "register_interval_seconds": 0.5,
    "prune_threshold_seconds": 3.0,
    "ready_after_seconds": 0.7,
}
FAST_HEALTH = {
    "desired_refresh_seconds": 1.0,
    "converge_interval_seconds": 0.05,
    "sweep_seconds": 0.3,
    "inflight_seconds": 10.0,
    "warm_up_seconds": 0.5,
}

# Short intervals: tests wait for heartbeats and probes, and should not wait long.
FAST_CELL = {
    "heartbeat_interval_seconds": 0.3,
    "stop_grace_seconds": 2.0,
    "containers": 32,
    "memory_mb": 8192,
    "disk_mb": 32768,
}


def memory_buses(request_timeout: float = 3.0) -> Callable[[str], Awaitable[Bus]]:
    """Buses on one in-process broker: a platform on the embedded bus."""
    broker = MemoryBroker()

    async def make(name: str) -> Bus:
        bus = MemoryBus(broker=broker, name=name, request_timeout=request_timeout)
        await bus.connect()
        return bus

    return make


def nats_buses(url: str, request_timeout: float = 3.0) -> Callable[[str], Awaitable[Bus]]:
    """Buses on a real nats-server."""

    async def make(name: str) -> Bus:
        bus = NatsBus(url, name=name, request_timeout=request_timeout)
        await bus.connect()
        return bus

    return make


async def eventually(
    probe: Callable[[], Awaitable[Any]], *, within: float = 30.0, interval: float = 0.1
) -> Any:
    """Poll `probe` until it returns something truthy; its last value on timeout is shown."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within}s; last value: {last!r}")


async def instance_answers(stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GET / of every instance listed in process stats (the hello app answers with its index
    and guid); fails unless each answers 200."""
    answers = []
    async with httpx.AsyncClient(timeout=5) as http:
        for entry in stats:
            port = entry["instance_ports"][0]["external"]
            response = await http.get(f"http://{entry['host']}:{port}/")
            assert response.status_code == 200, response.text
            answers.append(dict(response.json()))
    return answers


@dataclass
class Platform:
    parts: ControllerParts
    server: ApiServer
    server_task: asyncio.Task[None]
    api_url: str
    http: httpx.AsyncClient
    make_bus: Callable[[str], Awaitable[Bus]]
    work_root: Path
    admin: dict[str, str] = field(default_factory=dict)
    cells: dict[str, CellAgent] = field(default_factory=dict)
    _cell_buses: dict[str, Bus] = field(default_factory=dict)
    _port_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    routers: dict[str, RouterService] = field(default_factory=dict)
    router_ports: dict[str, RouterPorts] = field(default_factory=dict)
    _router_buses: dict[str, Bus] = field(default_factory=dict)
    health: HealthService | None = None
    _health_bus: Bus | None = None
    closed: bool = False

    # --- cells ------------------------------------------------------------------------------

    def cell_dir(self, cell_id: str) -> Path:
        return self.work_root / f"cell-{cell_id}"

    async def add_cell(self, cell_id: str, zone: str = "z1", **overrides: Any) -> CellAgent:
        # Cells on one host must not hand out the same ports: an app binds its port only after
        # it boots, so a cell's free-port check cannot see another cell's fresh instance.
        first, last = self._port_ranges.setdefault(cell_id, next_cell_port_range())
        ports = {"port_range_start": first, "port_range_end": last}
        settings = CellSection(**{**FAST_CELL, **ports, "id": cell_id, "zone": zone, **overrides})
        bus = await self.make_bus(f"cell-{cell_id}")
        agent = CellAgent(settings, bus=bus, work_dir=self.cell_dir(cell_id))
        await agent.start()
        self.cells[cell_id] = agent
        self._cell_buses[cell_id] = bus
        return agent

    async def stop_cell(self, cell_id: str, *, stop_instances: bool) -> None:
        agent = self.cells.pop(cell_id)
        await agent.stop(stop_instances=stop_instances)
        await self._cell_buses.pop(cell_id).close()

    async def wait_for_cells(self, count: int) -> None:
        async def known() -> bool:
            body = await self.get("/v3/x/cells")
            return len(body["resources"]) >= count

        await eventually(known)

    # --- routers ----------------------------------------------------------------------------

    async def add_router(self, name: str = "router", **overrides: Any) -> RouterService:
        """A router on the platform's bus (port 0: any free port, unless given), with short
        intervals; `router_url(name)` is where it listens."""
        settings = RouterSection(**{**FAST_ROUTER, "port": 0, "status_port": 0, **overrides})
        bus = await self.make_bus(f"router-{name}")
        service = RouterService(settings, bus, access_log=self.work_root / f"{name}-access.log")
        self.router_ports[name] = await service.start()
        self.routers[name] = service
        self._router_buses[name] = bus
        return service

    async def stop_router(self, name: str = "router") -> None:
        service = self.routers.pop(name)
        await service.stop()
        await self._router_buses.pop(name).close()

    def router_url(self, name: str = "router") -> str:
        return f"http://127.0.0.1:{self.router_ports[name].http}"

    async def wait_router_ready(self, name: str = "router") -> None:
        async def ready() -> bool:
            return self.routers[name].ready

        await eventually(ready, within=10)

    # --- the health service -----------------------------------------------------------------

    async def add_health(self, **overrides: Any) -> HealthService:
        """The health service on the platform's bus, acting on the controller in process (as
        in the micro cloud), with short intervals."""
        options = HealthOptions(**{**FAST_HEALTH, **overrides})
        bus = await self.make_bus("health")
        port = InProcessControllerPort(self.parts.controller.health)
        self.health = HealthService(bus, port, options)
        self._health_bus = bus
        await self.health.start()
        return self.health

    async def stop_health(self) -> None:
        if self.health is not None:
            await self.health.stop()
            self.health = None
        if self._health_bus is not None:
            await self._health_bus.close()
            self._health_bus = None

    # --- HTTP -------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        expect: int | tuple[int, ...] = (200, 201, 202, 204),
        **kwargs: Any,
    ) -> httpx.Response:
        response = await self.http.request(method, path, headers=self.admin, **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in expected, f"{method} {path}: {response.text}"
        return response

    async def get(self, path: str, **kwargs: Any) -> Any:
        return (await self.request("GET", path, **kwargs)).json()

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.request("POST", path, json=body or {})

    async def wait_job(self, location: str, within: float = 60.0) -> dict[str, Any]:
        async def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = await self.get(location)
            return job if job["state"] in ("COMPLETE", "FAILED") else None

        result: dict[str, Any] = await eventually(finished, within=within)
        return result

    # --- apps -------------------------------------------------------------------------------

    async def space(self, org: str = "acme", space: str = "dev") -> str:
        org_guid = (await self.post("/v3/organizations", {"name": org})).json()["guid"]
        body = {"name": space, "relationships": {"organization": {"data": {"guid": org_guid}}}}
        return str((await self.post("/v3/spaces", body)).json()["guid"])

    async def app_with_droplet(
        self, space_guid: str, name: str, droplet: BuiltDroplet | None = None
    ) -> dict[str, Any]:
        """An app with a current droplet (the hello app unless given), ready to start."""
        app = (
            await self.post(
                "/v3/apps",
                {"name": name, "relationships": {"space": {"data": {"guid": space_guid}}}},
            )
        ).json()
        if droplet is None:
            droplet = build_droplet(self.work_root / f"droplet-{name}.tgz")
        created = (
            await self.post(
                "/v3/droplets", {"relationships": {"app": {"data": {"guid": app["guid"]}}}}
            )
        ).json()
        bits = droplet.path.read_bytes()
        response = await self.request(
            "POST",
            f"/v3/droplets/{created['guid']}/upload",
            files={"bits": ("droplet.tgz", bits, "application/gzip")},
        )
        job = await self.wait_job(response.headers["Location"])
        assert job["state"] == "COMPLETE", job
        await self.request(
            "PATCH",
            f"/v3/apps/{app['guid']}/relationships/current_droplet",
            json={"data": {"guid": created["guid"]}},
        )
        return dict(app)

    async def create_app(
        self, space_guid: str, name: str, *, buildpacks: list[str] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "relationships": {"space": {"data": {"guid": space_guid}}},
        }
        if buildpacks is not None:
            body["lifecycle"] = {"type": "buildpack", "data": {"buildpacks": buildpacks}}
        return dict((await self.post("/v3/apps", body)).json())

    async def upload_package(
        self, app_guid: str, bits: bytes, resources: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """A READY bits package of the app from a zip (and already-known `resources`)."""
        package = (
            await self.post(
                "/v3/packages",
                {"type": "bits", "relationships": {"app": {"data": {"guid": app_guid}}}},
            )
        ).json()
        data = {"resources": json.dumps(resources)} if resources is not None else None
        await self.request(
            "POST",
            f"/v3/packages/{package['guid']}/upload",
            files={"bits": ("app.zip", bits, "application/zip")},
            data=data,
        )

        async def settled() -> dict[str, Any] | None:
            current: dict[str, Any] = await self.get(f"/v3/packages/{package['guid']}")
            return current if current["state"] in ("READY", "FAILED") else None

        result: dict[str, Any] = await eventually(settled, within=60)
        assert result["state"] == "READY", result
        return result

    async def stage(self, package_guid: str, within: float = 600.0, **body: Any) -> dict[str, Any]:
        """A build of the package, once it is STAGED or FAILED."""
        build = (await self.post("/v3/builds", {"package": {"guid": package_guid}, **body})).json()

        async def finished() -> dict[str, Any] | None:
            current: dict[str, Any] = await self.get(f"/v3/builds/{build['guid']}")
            return current if current["state"] in ("STAGED", "FAILED") else None

        result: dict[str, Any] = await eventually(finished, within=within, interval=0.05)
        return result

    async def push_source(
        self,
        space_guid: str,
        name: str,
        source: Path,
        *,
        buildpacks: list[str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Create the app, upload the directory, stage it; (app, finished build)."""
        app = await self.create_app(space_guid, name, buildpacks=buildpacks)
        package = await self.upload_package(app["guid"], zip_directory(source))
        return app, await self.stage(package["guid"])

    async def set_droplet(self, app_guid: str, droplet_guid: str) -> None:
        await self.request(
            "PATCH",
            f"/v3/apps/{app_guid}/relationships/current_droplet",
            json={"data": {"guid": droplet_guid}},
        )

    async def map_route(
        self, app_guid: str, space_guid: str, host: str, *, path: str = "", domain: str = ""
    ) -> dict[str, Any]:
        """A route host.domain/path (the platform's apps domain unless given) with the app's
        web process as its destination."""
        name = domain or self.parts.settings.apps_domain
        domains = await self.get(f"/v3/domains?names={name}")
        domain_guid = domains["resources"][0]["guid"]
        body: dict[str, Any] = {
            "host": host,
            "relationships": {
                "space": {"data": {"guid": space_guid}},
                "domain": {"data": {"guid": domain_guid}},
            },
        }
        if path:
            body["path"] = path
        route = (await self.post("/v3/routes", body)).json()
        await self.post(
            f"/v3/routes/{route['guid']}/destinations",
            {"destinations": [{"app": {"guid": app_guid}}]},
        )
        return dict(route)

    async def web_process(self, app_guid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.get(f"/v3/apps/{app_guid}/processes/web")
        return result

    async def scale(self, app_guid: str, instances: int) -> None:
        await self.post(
            f"/v3/apps/{app_guid}/processes/web/actions/scale", {"instances": instances}
        )

    async def stats(self, app_guid: str) -> list[dict[str, Any]]:
        body = await self.get(f"/v3/apps/{app_guid}/processes/web/stats")
        return list(body["resources"])

    async def wait_running(
        self, app_guid: str, count: int, within: float = 60.0
    ) -> list[dict[str, Any]]:
        """Stats once exactly `count` instances are RUNNING and nothing else is listed."""

        seen: list[list[str]] = [[]]

        async def running() -> list[dict[str, Any]] | None:
            stats = await self.stats(app_guid)
            seen[0] = [f"{entry['index']}:{entry['state']}" for entry in stats]
            return stats if [entry["state"] for entry in stats] == ["RUNNING"] * count else None

        try:
            result: list[dict[str, Any]] = await eventually(running, within=within)
        except AssertionError:
            raise AssertionError(
                f"not {count} RUNNING within {within}s; last stats: {seen[0]}; "
                f"cells: {self.instance_reports(app_guid)}"
            ) from None
        return result

    def instance_reports(self, app_guid: str) -> list[InstanceReport]:
        """Every live instance of the app on the in-process cells, straight from the cells."""
        found: list[InstanceReport] = []
        for agent in self.cells.values():
            found.extend(
                report
                for report in agent.heartbeat().instances
                if report.app_guid == app_guid and report.state.value != "STOPPED"
            )
        return found

    def running_record(self, app_guid: str, index: int) -> InstanceRecord:
        """The app's RUNNING instance at `index` on the in-process cells, from their tables."""
        for agent in self.cells.values():
            for record in agent.instances():
                spec = record.spec
                running = record.state.value == "RUNNING" and record.pid is not None
                if spec.app_guid == app_guid and spec.index == index and running:
                    return record
        raise AssertionError(f"no running instance of {app_guid} at index {index}")

    def kill_instance_at(self, app_guid: str, index: int) -> InstanceRecord:
        """SIGKILL the app's running instance at `index` (its process, as a crash would end
        it); the record of what was killed."""
        record = self.running_record(app_guid, index)
        assert record.pid is not None
        os.kill(record.pid, signal.SIGKILL)
        return record

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.stop_health()
        for cell_id in list(self.cells):
            await self.stop_cell(cell_id, stop_instances=True)
        for name in list(self.routers):
            await self.stop_router(name)
        await self.http.aclose()
        await stop_api(self.server, self.server_task)
        await self.parts.close()


async def start_platform(
    work_root: Path,
    *,
    make_bus: Callable[[str], Awaitable[Bus]],
    database_url: str = "",
    **overrides: Any,
) -> Platform:
    settings = ControllerSettings(
        **{
            "data_dir": work_root / "controller",
            "store": {"url": database_url},
            "auth": {"admin_password": ADMIN_PASSWORD, "access_token_ttl_seconds": 3600},
            "jobs": {"poll_interval_seconds": 0.05},
            "api": {"max_body_bytes": 1024 * 1024},
            "staging": {"poll_interval_seconds": 0.2},
            **overrides,
        }
    )
    bus = await make_bus("controller")
    parts = await build_controller(settings, bus=bus)
    await parts.start()
    server, task = await start_api(parts.app, "127.0.0.1", 0)
    api_url = f"http://127.0.0.1:{server.bound_port()}"
    parts.controller.set_api_url(api_url)
    http = httpx.AsyncClient(base_url=api_url, timeout=30)
    platform = Platform(
        parts=parts,
        server=server,
        server_task=task,
        api_url=api_url,
        http=http,
        make_bus=make_bus,
        work_root=work_root,
    )
    token = await http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        auth=("cf", ""),
    )
    assert token.status_code == 200, token.text
    platform.admin = {"Authorization": f"bearer {token.json()['access_token']}"}
    return platform


def zip_directory(source: Path) -> bytes:
    """The directory as a package zip (modes kept, like the cf CLI's), in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.rglob("*")):
            if path.is_dir() or any(part in SKIPPED for part in path.parts):
                continue
            info = zipfile.ZipInfo(str(path.relative_to(source)), date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (path.stat().st_mode & 0o7777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


class CellProcess:
    """`overcast cell` as a real subprocess on NATS; ready once it wrote `<work_dir>/ready`."""

    def __init__(self, work_dir: Path, env: dict[str, str]) -> None:
        self.work_dir = work_dir
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = work_dir.parent / f"{work_dir.name}.log"

    def start(self, timeout: float = 30.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        ready = self.work_dir / "ready"
        ready.unlink(missing_ok=True)
        env = {**os.environ, "OVERCAST_LOG_FORMAT": "json", **self.env}
        env["OVERCAST_CELL__WORK_DIR"] = str(self.work_dir)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, "cell"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"overcast cell did not get ready:\n{self.log_text()}")
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        process, self.process = self.process, None
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def instance_records(self) -> list[InstanceRecord]:
        """The cell's instance table as it last wrote it to disk."""
        table = read_table(self.work_dir / TABLE_FILE)
        return list(table.instances.values()) if table is not None else []

    def kill_instance(self, instance_guid: str) -> None:
        """SIGKILL one instance's process group (it runs in a session of its own), as a crash
        of the app would end it."""
        (record,) = [r for r in self.instance_records() if r.guid == instance_guid]
        assert record.pid is not None, record
        os.killpg(record.pid, signal.SIGKILL)

    def kill_instances(self) -> int:
        """SIGKILL every process working inside the cell's work dir: its instances, which run
        in sessions of their own, so that killing the cell does not reach them. How many."""
        killed = 0
        root = str(self.work_dir.resolve())
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "cwd").startswith(root):
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
            except OSError:  # gone meanwhile, or not ours to read
                continue
        return killed

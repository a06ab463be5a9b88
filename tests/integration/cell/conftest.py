"""Cells on the memory bus running real processes; droplets served over HTTP from a thread.
Every process a test starts is killed at teardown, whatever the test left behind."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from overcast.bus.memory import MemoryBus
from overcast.bus.messages import Wire
from overcast.bus.subjects import cell_rpc
from overcast.cell.agent import CellAgent
from overcast.core.settings import CellSection
from overcast.testing.cells import DropletServer, kill_session
from overcast.testing.droplets import BuiltDroplet, build_droplet
from overcast.testing.ports import next_cell_port_range

# An app that prints a line every 50 ms (logs) and answers on its port (probes).
CHATTY_APP = """\
import http.server, os, sys, threading, time

def chatter():
    n = 0
    while True:
        print("tick", n, flush=True)
        print("warn", n, file=sys.stderr, flush=True)
        n += 1
        time.sleep(0.05)

threading.Thread(target=chatter, daemon=True).start()
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])),
                       http.server.SimpleHTTPRequestHandler).serve_forever()
"""


@dataclass
class Droplets:
    server: DropletServer
    hello: BuiltDroplet
    chatty: BuiltDroplet

    def url(self, droplet: BuiltDroplet) -> str:
        return self.server.url(droplet.path.name)


@pytest.fixture(scope="session")
def droplets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Droplets]:
    directory = tmp_path_factory.mktemp("droplets")
    hello = build_droplet(directory / "hello.tgz")
    chatty = build_droplet(
        directory / "chatty.tgz",
        files={"app.py": CHATTY_APP},
        process_types={"web": "python3 app.py"},
    )
    with DropletServer(directory) as server:
        yield Droplets(server=server, hello=hello, chatty=chatty)


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    made = MemoryBus(request_timeout=5.0)
    await made.connect()
    try:
        yield made
    finally:
        await made.close()


def cell_settings(**overrides: Any) -> CellSection:
    first, last = next_cell_port_range()
    values: dict[str, Any] = {
        "id": f"cell-{secrets.token_hex(4)}",
        "heartbeat_interval_seconds": 0.2,
        "stop_grace_seconds": 1.0,
        "memory_mb": 4096,
        "disk_mb": 4096,
        "port_range_start": first,
        "port_range_end": last,
    }
    values.update(overrides)
    return CellSection(**values)


@dataclass
class Cells:
    """Makes agents and takes them all down at teardown."""

    bus: MemoryBus
    root: Path
    agents: list[CellAgent] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    async def start(
        self, settings: CellSection | None = None, *, work_dir: Path | None = None
    ) -> CellAgent:
        settings = settings or cell_settings()
        agent = CellAgent(settings, bus=self.bus, work_dir=work_dir or self.root / settings.id)
        self.agents.append(agent)
        await agent.start()
        return agent

    def note_pids(self) -> None:
        for agent in self.agents:
            self.pids.update(r.pid for r in agent.instances() if r.pid is not None)

    async def rpc(self, agent: CellAgent, command: Wire) -> dict[str, Any]:
        reply = await self.bus.request(cell_rpc(agent.cell_id), command.wire(), timeout=5)
        return reply.data

    async def close(self) -> None:
        self.note_pids()
        for agent in self.agents:
            await agent.stop(stop_instances=True)
        for pid in self.pids:
            kill_session(pid)


@pytest.fixture
async def cells(bus: MemoryBus, tmp_path: Path) -> AsyncIterator[Cells]:
    made = Cells(bus=bus, root=tmp_path)
    try:
        yield made
    finally:
        await made.close()

"""Test support for cells: a droplet HTTP server standing in for the blobstore's signed URLs,
instance specs, a recorder of bus messages, and polling with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from overcast.bus.base import Bus, Message, Subscription
from overcast.bus.messages import (
    Checksum,
    DropletSource,
    HealthCheckSpec,
    InstanceSpec,
)
from overcast.core.ids import new_guid
from overcast.testing.droplets import BuiltDroplet


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


class DropletServer:
    """Serves the files of a directory on 127.0.0.1 from a thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        handler = partial(_QuietHandler, directory=str(directory))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.requests = 0

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def url(self, name: str) -> str:
        # The query stands in for a signature: the cell must never log it.
        return f"http://127.0.0.1:{self.port}/{name}?signature=secret-token"

    def start(self) -> DropletServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> DropletServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def instance_spec(
    droplet: BuiltDroplet,
    url: str,
    *,
    command: str | None = None,
    health_check: HealthCheckSpec | None = None,
    checksum: str | None = None,
    **fields: Any,
) -> InstanceSpec:
    """A spec of the droplet's web process with small quotas; `fields` override the rest."""
    values: dict[str, Any] = {
        "instance_guid": new_guid(),
        "process_guid": new_guid(),
        "process_type": "web",
        "index": 0,
        "version": "v1",
        "app_guid": new_guid(),
        "app_name": "hello",
        "space_guid": new_guid(),
        "org_guid": new_guid(),
        "droplet": DropletSource(
            guid=new_guid(), url=url, checksum=Checksum(value=checksum or droplet.sha256)
        ),
        "command": command or droplet.process_types["web"],
        "memory_mb": 64,
        "disk_mb": 64,
        "stack": "overcast-linux",
        "health_check": health_check or HealthCheckSpec(interval_seconds=0.1, timeout_seconds=15),
    }
    values.update(fields)
    return InstanceSpec(**values)


class Recorder:
    """Keeps every message of the subjects it listens to."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._subscriptions: list[Subscription] = []

    async def listen(self, bus: Bus, *subjects: str) -> Recorder:
        for subject in subjects:
            self._subscriptions.append(await bus.subscribe(subject, self._keep))
        return self

    async def _keep(self, message: Message) -> None:
        self.messages.append(message)

    def of(self, subject: str) -> list[dict[str, Any]]:
        return [message.data for message in self.messages if message.subject == subject]

    async def close(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


async def eventually(
    check: Callable[[], Any | Awaitable[Any]],
    *,
    within: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll until `check` returns something truthy (returned); AssertionError at the deadline."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(interval)


def kill_session(pid: int) -> None:
    """Safety net for tests: SIGKILL a session's group, whatever state the cell left it in."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)

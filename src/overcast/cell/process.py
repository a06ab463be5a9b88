"""The `process` runtime: an instance is a plain process group in its own session, started
from the unpacked droplet with a clean environment. No isolation (that is crun's job); works
anywhere, for development and the micro cloud.

An instance is tracked by its session id (its main process's pid): everything it forks stays
in the session unless it calls setsid itself, and the kernel does not hand the number out again
while any process of the session lives."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import httpx

from overcast.bus.messages import InstanceSpec
from overcast.cell import procfs
from overcast.cell.droplets import DropletCache
from overcast.cell.environment import build_environment
from overcast.cell.runtime import (
    STREAMS,
    ExitStatus,
    PrepareError,
    ProcessHandle,
    SpawnError,
    Usage,
    log_path,
)
from overcast.core.logging import get_logger
from overcast.staging.archives import ArchiveLimits, UnsafeArchive, safe_extract
from overcast.staging.launcher import launcher_command

log = get_logger(__name__)

SHELL = "/bin/bash"
# How often a stop looks whether the processes are gone.
STOP_POLL_SECONDS = 0.05
# After SIGKILL, how long to wait for the kernel to take the processes away.
KILL_WAIT_SECONDS = 5.0
MAX_REMEMBERED_EXITS = 1024


class ProcessRuntime:
    name = "process"

    def __init__(
        self,
        work_dir: Path,
        *,
        limits: ArchiveLimits | None = None,
        download_timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.droplets = DropletCache(
            work_dir / "droplets", timeout=download_timeout, transport=transport
        )
        self._limits = limits or ArchiveLimits()
        # Our own children: kept so that only we reap them (and get their exit status).
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        # How reaped instances ended, for whoever polls them next.
        self._ended: dict[ProcessHandle, ExitStatus] = {}

    async def prepare(self, spec: InstanceSpec, instance_dir: Path) -> None:
        tarball = await self.droplets.fetch(spec.droplet)
        extraction = asyncio.ensure_future(
            asyncio.to_thread(safe_extract, tarball, instance_dir, self._limits)
        )
        try:
            await asyncio.shield(extraction)
        except asyncio.CancelledError:
            # Let the thread finish before the caller removes the directory it writes into.
            await asyncio.wait({extraction})
            if not extraction.cancelled():
                extraction.exception()
            raise
        except UnsafeArchive as error:
            raise PrepareError(f"droplet {spec.droplet.guid} cannot be unpacked: {error}") from None
        except OSError as error:
            raise PrepareError(
                f"droplet {spec.droplet.guid} cannot be unpacked: {error.strerror}"
            ) from None
        if not (instance_dir / "app").is_dir():
            raise PrepareError(f"droplet {spec.droplet.guid} has no app/ directory")

    def spawn(
        self, spec: InstanceSpec, instance_dir: Path, *, host: str, port: int
    ) -> ProcessHandle:
        app = instance_dir / "app"
        tmp = instance_dir / "tmp"
        tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_path(instance_dir, "stdout").parent.mkdir(parents=True, exist_ok=True)
        environment = build_environment(spec, host=host, port=port, home=str(app), tmpdir=str(tmp))
        # Files, not pipes: the instance must survive the cell process going away.
        outputs = [
            os.open(log_path(instance_dir, stream), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            for stream in STREAMS
        ]
        try:
            child = subprocess.Popen(
                [SHELL, "-c", launcher_command(spec.command)],
                cwd=app,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=outputs[0],
                stderr=outputs[1],
                start_new_session=True,
                close_fds=True,
            )
        except OSError as error:
            raise SpawnError(f"cannot start {SHELL}: {error.strerror}") from None
        finally:
            for descriptor in outputs:
                os.close(descriptor)
        self._children[child.pid] = child
        stat = procfs.read_stat(child.pid)
        return ProcessHandle(pid=child.pid, start_time=stat.start_time if stat else 0)

    def poll(self, handle: ProcessHandle) -> ExitStatus | None:
        ended = self._ended.get(handle)
        if ended is not None:
            return ended
        child = self._children.get(handle.pid)
        if child is None:
            status = self._poll_adopted(handle)
        else:
            code = child.poll()
            if code is None:
                return None
            del self._children[handle.pid]
            status = ExitStatus(signal=-code) if code < 0 else ExitStatus(code=code)
        if status is not None:
            self._ended[handle] = status
            while len(self._ended) > MAX_REMEMBERED_EXITS:
                del self._ended[next(iter(self._ended))]
        return status

    def _poll_adopted(self, handle: ProcessHandle) -> ExitStatus | None:
        stat = procfs.read_stat(handle.pid)
        if stat is None or stat.start_time != handle.start_time:
            return ExitStatus()
        if not stat.zombie:
            return None
        # A zombie child of this process (an earlier agent in the same process) can still
        # tell how it ended; one of another parent cannot.
        with contextlib.suppress(ChildProcessError):
            waited, status = os.waitpid(handle.pid, os.WNOHANG)
            if waited == handle.pid:
                code = os.waitstatus_to_exitcode(status)
                return ExitStatus(signal=-code) if code < 0 else ExitStatus(code=code)
        return ExitStatus()

    def adopt(self, handle: ProcessHandle) -> bool:
        stat = procfs.read_stat(handle.pid)
        return stat is not None and stat.start_time == handle.start_time and not stat.zombie

    async def stop(self, handle: ProcessHandle, *, grace: float) -> ExitStatus | None:
        self._signal(handle, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        status = self.poll(handle)
        while loop.time() < deadline:
            if status is not None and not procfs.session_members(handle.pid):
                return status
            await asyncio.sleep(STOP_POLL_SECONDS)
            status = status or self.poll(handle)
        await self.kill(handle)
        return status or self.poll(handle)

    async def kill(self, handle: ProcessHandle) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KILL_WAIT_SECONDS
        while True:
            self._signal(handle, signal.SIGKILL)
            self.poll(handle)  # reap our child, so it does not linger as a zombie
            if not procfs.session_members(handle.pid) or loop.time() > deadline:
                return
            await asyncio.sleep(STOP_POLL_SECONDS)

    def _signal(self, handle: ProcessHandle, number: signal.Signals) -> None:
        members = procfs.session_members(handle.pid)
        # Without a live member the number may name someone else's group by now.
        if members or self.adopt(handle):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(handle.pid, number)
        for member in members:
            if member.pgrp != handle.pid:  # moved to a group of its own, same session
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(member.pid, number)

    def usage(self, handle: ProcessHandle) -> Usage | None:
        members = procfs.session_members(handle.pid)
        if not members:
            return None
        ticks = sum(member.utime + member.stime for member in members)
        started = handle.start_time / procfs.CLOCK_TICKS
        return Usage(
            cpu_seconds=ticks / procfs.CLOCK_TICKS,
            memory_bytes=sum(member.rss_pages for member in members) * procfs.PAGE_SIZE,
            age_seconds=max(0.0, procfs.uptime_seconds() - started),
        )

    async def remove(self, instance_dir: Path) -> None:
        await asyncio.to_thread(shutil.rmtree, instance_dir, True)

    async def close(self) -> None:
        return None

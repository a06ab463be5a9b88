"""The interface between the cell agent and what actually runs instances (DESIGN.md section
8): `process` (a plain process group) now, `crun` (an OCI container) later.

The agent owns the instance table, ports, probes and logs; a runtime only prepares an
instance's directory, starts its command, tells whether it still runs, measures it and stops
it. Every instance keeps its stdout and stderr in files of its directory (`log_path`) that the
runtime opens for appending, so an instance outlives its cell process and the next one resumes
reading where the last left off."""

from __future__ import annotations

import signal as signals
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from overcast.bus.messages import InstanceSpec

Stream = Literal["stdout", "stderr"]
STREAMS: tuple[Stream, ...] = ("stdout", "stderr")


class PrepareError(Exception):
    """The droplet could not be fetched, verified or unpacked (the instance crashes with
    DOWNLOAD_FAILED). The message is shown to users: it never holds the signed URL."""


class SpawnError(Exception):
    """The instance's command could not be started."""


@dataclass(frozen=True)
class ProcessHandle:
    """Identifies a started instance across cell restarts (persisted in the table)."""

    pid: int
    # /proc start time (clock ticks after boot): a reused pid has another one.
    start_time: int


@dataclass(frozen=True)
class ExitStatus:
    """How an instance's main process ended; both None when it ended unobserved."""

    code: int | None = None
    signal: int | None = None

    @property
    def status(self) -> int | None:
        """A shell's view: the code, or 128 + the signal that killed it."""
        if self.code is not None:
            return self.code
        if self.signal is not None:
            return 128 + self.signal
        return None

    def describe(self) -> str:
        """For the instance's `detail`: "exited with status 1", "killed by signal 9"."""
        if self.signal is not None:
            return f"killed by signal {self.signal} ({_signal_name(self.signal)})"
        if self.code is None:
            return "exited while the cell was not watching (status unknown)"
        if self.code == 127:
            return "exited with status 127: the start command was not found"
        if self.code == 126:
            return "exited with status 126: the start command could not be executed"
        if 128 < self.code < 128 + 65:
            # The shell reports a child killed by a signal this way.
            return f"exited with status {self.code} (killed by signal {self.code - 128})"
        return f"exited with status {self.code}"

    def summary(self) -> str:
        """For the app's log: "Exit status 137 (killed by signal 9)"."""
        if self.status is None:
            return "Exit status unknown (the instance ended while the cell was not watching)"
        if self.signal is not None:
            return f"Exit status {self.status} (killed by signal {self.signal})"
        if self.code in (126, 127):
            return f"Exit status {self.status} ({self.describe().split(': ', 1)[1]})"
        return f"Exit status {self.status}"


def _signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True)
class Usage:
    """A sample of an instance's processes."""

    cpu_seconds: float
    memory_bytes: int
    # Seconds since the main process started (to average CPU over before a second sample).
    age_seconds: float


def log_path(instance_dir: Path, stream: Stream) -> Path:
    return instance_dir / "logs" / f"{stream}.log"


class Runtime(Protocol):
    name: str

    async def prepare(self, spec: InstanceSpec, instance_dir: Path) -> None:
        """Fetch the droplet (verified against the spec's checksum) and unpack it into
        `instance_dir`. Raises PrepareError."""

    def spawn(
        self, spec: InstanceSpec, instance_dir: Path, *, host: str, port: int
    ) -> ProcessHandle:
        """Start the instance's command (synchronously: the caller records the handle before
        anything can interrupt it). Raises SpawnError."""

    def poll(self, handle: ProcessHandle) -> ExitStatus | None:
        """None while the instance's main process runs; how it ended otherwise."""

    def adopt(self, handle: ProcessHandle) -> bool:
        """Whether a handle saved by an earlier cell process still names a live process."""

    async def stop(self, handle: ProcessHandle, *, grace: float) -> ExitStatus | None:
        """SIGTERM to every process of the instance, SIGKILL after `grace` seconds; returns
        once none is left."""

    async def kill(self, handle: ProcessHandle) -> None:
        """SIGKILL whatever is left of the instance (after its main process ended)."""

    def usage(self, handle: ProcessHandle) -> Usage | None:
        """CPU time and memory of the instance's processes; None when it is gone."""

    async def remove(self, instance_dir: Path) -> None:
        """Delete the instance's directory (idempotent)."""

    async def close(self) -> None:
        """Release what the runtime holds (HTTP clients); instances keep running."""

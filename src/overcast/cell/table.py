"""The cell's instance table: every instance it holds, with what it needs to re-adopt them
after a restart, persisted to `<work_dir>/instances.json` on every change."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from overcast.bus.messages import InstanceReport, InstanceSpec
from overcast.cell.runtime import ProcessHandle
from overcast.models.instances import (
    ALLOCATING_STATES,
    CRASH_RESET_SECONDS,
    CellState,
    InstanceState,
)

TABLE_FILE = "instances.json"
CELL_ID_FILE = "cell-id"
MAX_TOMBSTONES = 1000


class TableError(Exception):
    """The table file exists but cannot be read back."""


class InstanceRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    spec: InstanceSpec
    state: InstanceState
    # Unix time of the last state change.
    since: float
    seq: int = 0
    port: int | None = None
    pid: int | None = None
    pid_start_time: int | None = None
    reason: str | None = None
    detail: str | None = None
    exit_status: int | None = None
    crash_count: int = 0
    # Unix time it became RUNNING (uptime in stats).
    running_since: float | None = None
    # Bytes of stdout/stderr already published, to resume after a cell restart.
    log_offsets: dict[str, int] = Field(default_factory=dict)

    @property
    def guid(self) -> str:
        return self.spec.instance_guid

    @property
    def allocating(self) -> bool:
        return self.state in ALLOCATING_STATES

    def crash_count_after_crash(self, crashed_at: float) -> int:
        """The index's crash count once a crash at `crashed_at` is counted. It goes on from
        the count the instance started with (carried over from the record it replaced), unless
        it ran healthy long enough for the earlier crashes not to matter any more."""
        running_since = self.running_since
        if running_since is not None and crashed_at - running_since >= CRASH_RESET_SECONDS:
            return 1
        return self.crash_count + 1

    @property
    def handle(self) -> ProcessHandle | None:
        if self.pid is None or self.pid_start_time is None:
            return None
        return ProcessHandle(pid=self.pid, start_time=self.pid_start_time)

    def report(self, host: str) -> InstanceReport:
        spec = self.spec
        return InstanceReport(
            instance_guid=spec.instance_guid,
            process_guid=spec.process_guid,
            process_type=spec.process_type,
            app_guid=spec.app_guid,
            index=spec.index,
            version=spec.version,
            state=self.state,
            since=self.since,
            host=host,
            port=self.port,
            memory_mb=spec.memory_mb,
            disk_mb=spec.disk_mb,
            seq=self.seq,
            reason=self.reason,
            exit_status=self.exit_status,
            detail=self.detail,
            crash_count=self.crash_count,
        )


class CellTable(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cell_id: str
    # Counts every change of the table; only grows, across restarts too.
    seq: int = 0
    state: CellState = CellState.ENABLED
    instances: dict[str, InstanceRecord] = Field(default_factory=dict)
    # Guids stopped here, newest last: a replayed `start` of one is refused as stale.
    tombstones: list[str] = Field(default_factory=list)

    def bump(self) -> int:
        self.seq += 1
        return self.seq

    def stamp(self, record: InstanceRecord) -> None:
        """Record a change of one instance."""
        record.seq = self.bump()

    def add(self, record: InstanceRecord) -> None:
        self.instances[record.guid] = record
        self.stamp(record)

    def forget(self, guid: str) -> None:
        """Drop a stopped instance, remembering its guid."""
        self.instances.pop(guid, None)
        if guid in self.tombstones:
            self.tombstones.remove(guid)
        self.tombstones.append(guid)
        del self.tombstones[:-MAX_TOMBSTONES]
        self.bump()

    def is_tombstoned(self, guid: str) -> bool:
        return guid in self.tombstones

    def allocating(self) -> list[InstanceRecord]:
        return [record for record in self.instances.values() if record.allocating]


def write_table(path: Path, table: CellTable) -> None:
    """Atomically: a temporary file in the same directory, fsync, rename, fsync the dir."""
    write_atomically(path, table.model_dump_json(indent=1).encode())


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_table(path: Path) -> CellTable | None:
    """The saved table; None when there is none yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return CellTable.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as error:
        raise TableError(f"cannot read the instance table {path}: {error}") from None


def load_cell_id(work_dir: Path, configured: str = "") -> str:
    """The configured id, else the one generated on the first start and kept in the dir."""
    if configured:
        return configured
    path = work_dir / CELL_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        saved = path.read_text().strip()
        if saved:
            return saved
    generated = f"cell-{secrets.token_hex(6)}"
    write_atomically(path, (generated + "\n").encode())
    return generated

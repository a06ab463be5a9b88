"""Schemas of the messages between controller, cells and health manager (DESIGN.md section 4).

Senders build a model and send `model.wire()`; receivers call `Model.parse(message.data)`,
which raises `BadMessage` for anything malformed (the receiver logs and drops it, or answers a
reject). Unknown fields are ignored so that a newer sender does not break an older receiver.

Sequence numbers: a cell counts every change to its instance table (`seq`, persisted, so it
only grows across restarts). Heartbeats, events and RPC replies carry it, so an observer can
tell which of two reports about the same cell is newer whatever order they arrived in.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from overcast.models.instances import CellState, InstanceState, RejectReason


class BadMessage(ValueError):
    """A bus payload that does not fit its schema."""


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def parse(cls, data: Any) -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in error.errors()[:5])
            raise BadMessage(f"malformed {cls.__name__}: {fields}") from None

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --- commands: controller -> cell.<id>.rpc -----------------------------------------------------


class Checksum(Wire):
    type: Literal["sha256"] = "sha256"
    value: str = Field(pattern=r"^[0-9a-f]{64}$")


class DropletSource(Wire):
    guid: str
    # A signed, expiring URL of the droplet tarball on the controller's blobstore.
    url: str
    checksum: Checksum


class HealthCheckSpec(Wire):
    type: Literal["port", "http", "process"] = "port"
    endpoint: str | None = None  # http only: a path, e.g. "/health"
    # Seconds to become ready before the start counts as failed (CF `timeout`).
    timeout_seconds: float = Field(default=60.0, gt=0)
    # Seconds one probe may take (CF `invocation_timeout`).
    invocation_timeout_seconds: float = Field(default=1.0, gt=0)
    # Seconds between probes, for readiness and for liveness once running.
    interval_seconds: float = Field(default=0.5, gt=0)


class InstanceSpec(Wire):
    """Everything a cell needs to run one instance; persisted by the cell as given."""

    instance_guid: str
    process_guid: str
    process_type: str
    index: int = Field(ge=0)
    # The process's desired-state version this instance was computed from.
    version: str
    app_guid: str
    app_name: str
    space_guid: str
    org_guid: str
    droplet: DropletSource
    command: str = Field(min_length=1)
    # The app's own variables plus VCAP_APPLICATION and VCAP_SERVICES (JSON strings). The
    # cell adds PORT, CF_INSTANCE_* and the rest of the per-instance environment.
    environment: dict[str, str] = Field(default_factory=dict)
    memory_mb: int = Field(ge=1)
    disk_mb: int = Field(ge=1)
    stack: str
    # Placement tags the instance requires of its cell.
    tags: list[str] = Field(default_factory=list)
    health_check: HealthCheckSpec = Field(default_factory=HealthCheckSpec)
    # Routes (uris: "host.domain[/path]") to register with the routers once ready.
    routes: list[str] = Field(default_factory=list)
    # A route's load balancing ("round-robin" or "least-connection"), by uri, when not the
    # default round-robin.
    route_options: dict[str, str] = Field(default_factory=dict)
    log_rate_limit_bytes_per_second: int = -1
    # Consecutive crashes of this index so far, carried over from the crash record this
    # instance replaces: the cell counts on from it, so crash back-off grows across
    # replacements (DESIGN.md section 7).
    crash_count: int = Field(default=0, ge=0)


class StartInstance(Wire):
    op: Literal["start"] = "start"
    instance: InstanceSpec


class StopInstance(Wire):
    op: Literal["stop"] = "stop"
    instance_guid: str
    version: str
    reason: str = "STOPPED"


class SetCellState(Wire):
    op: Literal["set_state"] = "set_state"
    state: Literal["ENABLED", "DISABLED"]


class InstanceStatsRequest(Wire):
    op: Literal["stats"] = "stats"
    # Instances of these processes; empty: every instance on the cell.
    process_guids: list[str] = Field(default_factory=list)


class SetRoutes(Wire):
    """A process's routes changed (a route mapped or unmapped): its instances here register
    the new list at once and unregister what left it. No restart, as in CF."""

    op: Literal["set_routes"] = "set_routes"
    process_guid: str
    routes: list[str] = Field(default_factory=list)
    route_options: dict[str, str] = Field(default_factory=dict)


class StagingSpec(Wire):
    """Everything a cell needs to stage one build. The URLs are signed (they carry a secret)
    and the environment holds the app's variables: neither is ever logged."""

    build_guid: str
    app_guid: str
    droplet_guid: str
    # GET: the package as a zip.
    package_url: str
    # POST: the droplet tarball (its staging_info.yml says what it runs).
    droplet_upload_url: str
    # POST: {"reason", "detail"} when staging failed.
    failure_url: str
    # Buildpack names, absolute paths or git/zip URLs, in order; empty: detect.
    buildpacks: list[str] = Field(default_factory=list)
    stack: str
    environment: dict[str, str] = Field(default_factory=dict)
    memory_mb: int = Field(ge=1)
    disk_mb: int = Field(ge=1)
    timeout_seconds: float = Field(gt=0)
    # The most a package zip may hold (expanded), as the controller's limits say.
    max_package_bytes: int = Field(ge=1)


class StageCommand(Wire):
    op: Literal["stage"] = "stage"
    staging: StagingSpec


CellCommand = (
    StartInstance | StopInstance | SetCellState | InstanceStatsRequest | StageCommand | SetRoutes
)
COMMANDS: dict[str, type[Wire]] = {
    "set_routes": SetRoutes,
    "start": StartInstance,
    "stop": StopInstance,
    "set_state": SetCellState,
    "stats": InstanceStatsRequest,
    "stage": StageCommand,
}


def parse_command(data: Any) -> Wire:
    """The command a `cell.<id>.rpc` payload holds; BadMessage when there is none."""
    op = data.get("op") if isinstance(data, dict) else None
    model = COMMANDS.get(op) if isinstance(op, str) else None
    if model is None:
        raise BadMessage(f"unknown cell command {op!r}")
    return model.parse(data)


# --- reports: cell -> everyone -----------------------------------------------------------------


class InstanceReport(Wire):
    """One instance as its cell sees it (in heartbeats, events and RPC replies)."""

    instance_guid: str
    process_guid: str
    process_type: str
    app_guid: str
    index: int
    version: str
    state: InstanceState
    # Unix time (seconds) of the last state change.
    since: float
    host: str
    port: int | None = None
    memory_mb: int
    disk_mb: int
    # The cell's seq at the instance's last change.
    seq: int = 0
    # Why it is CRASHED (or why it stopped), and the exit status when it exited.
    reason: str | None = None
    exit_status: int | None = None
    # Human-readable detail for the stats `details` field ("exited with status 1", ...).
    detail: str | None = None
    crash_count: int = 0


class Resources(Wire):
    memory_mb: int = Field(ge=0)
    disk_mb: int = Field(ge=0)
    containers: int = Field(ge=0)


class Heartbeat(Wire):
    cell_id: str
    zone: str
    state: CellState
    host: str
    stacks: list[str]
    tags: list[str] = Field(default_factory=list)
    capacity: Resources
    allocated: Resources
    # Every instance the cell holds, CRASHED ones included.
    instances: list[InstanceReport]
    seq: int
    interval_seconds: float
    # Unix times: when it was sent, and when the cell process started.
    sent_at: float
    started_at: float
    # Builds the cell is staging now (their guids); a build missing here is not being staged.
    staging: list[str] = Field(default_factory=list)


class InstanceEvent(Wire):
    cell_id: str
    instance: InstanceReport
    from_state: InstanceState
    to_state: InstanceState


class RpcReply(Wire):
    accepted: bool
    reason: RejectReason | None = None
    detail: str | None = None
    cell_id: str
    seq: int = 0
    # `start`: the instance as accepted (an existing one when the command was a repeat).
    instance: InstanceReport | None = None


class InstanceUsage(Wire):
    instance_guid: str
    process_guid: str
    index: int
    state: InstanceState
    host: str
    port: int | None = None
    # Seconds since the instance became RUNNING (0 when not running).
    uptime_seconds: float = 0.0
    # Fraction of one CPU over the last sample (0.5 = half a core).
    cpu: float = 0.0
    memory_bytes: int = 0
    disk_bytes: int = 0
    memory_quota_bytes: int = 0
    disk_quota_bytes: int = 0
    reason: str | None = None
    detail: str | None = None


class StatsReply(Wire):
    cell_id: str
    instances: list[InstanceUsage]


class CellDiscover(Wire):
    """A controller or health manager that (re)started asks every cell for a heartbeat now."""

    requester: str


class CellLost(Wire):
    """`cell.lost`: the health service judged a cell lost (three missed heartbeats) and is
    re-placing its instances: routers withdraw the endpoints that cell registered, so a paused
    or partitioned cell's instances get no requests. With `back`, the cell is heard again and
    settled (its stale copies stopped): routers take its registrations again."""

    cell_id: str = Field(min_length=1)
    judged_by: str = ""
    # Unix seconds of the verdict, and of the cell's last heartbeat.
    at: float
    last_heard: float | None = None
    # False: the verdict. True: the cell is heard again and the copies it kept whose index was
    # re-placed meanwhile are stopped: routers take its registrations again.
    back: bool = False


# --- router.register / router.unregister / router.start / router.greet --------------------------


class ModificationTag(Wire):
    """Orders registrations of one endpoint: from the same source (`guid`, the instance), a
    higher `index` is newer; a different source always replaces (gorouter's rule)."""

    guid: str
    index: int = Field(ge=0)

    def succeeds(self, other: ModificationTag) -> bool:
        return self.guid != other.guid or self.index > other.index


class RouteRegistration(Wire):
    """One instance's routes (also the body of an unregister, which removes these uris)."""

    uris: list[str]
    host: str
    port: int = Field(ge=1, le=65535)
    app_guid: str
    process_guid: str = ""
    instance_guid: str
    index: int = Field(default=0, ge=0)
    tag: ModificationTag
    # The cell holding the instance (a `cell.lost` verdict withdraws its endpoints).
    cell_id: str = ""
    # Forget the endpoint when not re-registered for this long (capped by the router's own).
    stale_threshold_seconds: float | None = Field(default=None, gt=0)
    # uri -> "round-robin" | "least-connection", for routes that are not round-robin.
    load_balancing: dict[str, str] = Field(default_factory=dict)


class RouterStart(Wire):
    """A router announcing itself (router.start, and the answer to router.greet): how often
    it wants registrations, and when it forgets an endpoint that stopped sending them."""

    id: str
    hosts: list[str] = Field(default_factory=list)
    minimum_register_interval_seconds: float = Field(gt=0)
    prune_threshold_seconds: float = Field(gt=0)


class RouterGreet(Wire):
    """Asked of the routers by a cell that (re)started: answered with a RouterStart."""

    requester: str


# --- logs.<app guid> ---------------------------------------------------------------------------


class LogLine(Wire):
    @staticmethod
    def payload(
        app_guid: str,
        source: str,
        line: str,
        timestamp: int,
        *,
        stream: Literal["stdout", "stderr"] = "stdout",
        instance_guid: str | None = None,
    ) -> dict[str, Any]:
        """The wire form built directly, for hot paths (the router's one line per request):
        the same fields the model has (a unit test holds the two together)."""
        return {
            "app_guid": app_guid,
            "source": source,
            "stream": stream,
            "line": line,
            "timestamp": timestamp,
            "instance_guid": instance_guid,
        }

    app_guid: str
    # STG, APP/PROC/WEB/0, RTR, API, CELL (CF's source type, with the instance index for APP).
    source: str
    stream: Literal["stdout", "stderr"] = "stdout"
    line: str
    # Unix time in nanoseconds (CF log envelopes count in nanoseconds).
    timestamp: int
    instance_guid: str | None = None


class LogBatch(Wire):
    """Several lines of one app in one message on `logs.<app>` (the router's RTR lines: one
    bus message per request would cost the data plane more than proxying it)."""

    lines: list[LogLine] = Field(max_length=10_000)

    @staticmethod
    def payload(lines: list[dict[str, Any]]) -> dict[str, Any]:
        return {"lines": lines}


def parse_log_message(data: Any) -> list[LogLine]:
    """The lines a `logs.<app>` message holds: one LogLine, or a LogBatch."""
    if isinstance(data, dict) and "lines" in data:
        return LogBatch.parse(data).lines
    return [LogLine.parse(data)]

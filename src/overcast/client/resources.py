"""The JSON the API returns, as TypedDicts: what a caller may rely on, checked by mypy.

The client does not validate bodies at run time (it trusts the CF contract); these types
describe the shapes of `overcast.api.presenters`. Resources are plain dicts, so anything the
server adds later is still there for callers that look for it."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from overcast.client.errors import ErrorEntry

EnvValue = str | int | float | bool | None


class Link(TypedDict):
    href: str
    method: NotRequired[str]


class Metadata(TypedDict):
    labels: dict[str, str]
    annotations: dict[str, str]


class GuidRef(TypedDict):
    guid: str


class ToOne(TypedDict):
    data: GuidRef | None


class Pagination(TypedDict):
    total_results: int
    total_pages: int
    first: Link
    last: Link
    next: Link | None
    previous: Link | None


class Organization(TypedDict):
    guid: str
    created_at: str
    updated_at: str
    name: str
    suspended: bool
    relationships: dict[str, ToOne]
    metadata: Metadata
    links: dict[str, Link]


class SpaceRelationships(TypedDict):
    organization: ToOne


class Space(TypedDict):
    guid: str
    created_at: str
    updated_at: str
    name: str
    relationships: SpaceRelationships
    metadata: Metadata
    links: dict[str, Link]


class LifecycleData(TypedDict):
    buildpacks: list[str]
    stack: str | None


class Lifecycle(TypedDict):
    type: str
    data: LifecycleData


class AppRelationships(TypedDict):
    space: ToOne


class App(TypedDict):
    guid: str
    created_at: str
    updated_at: str
    name: str
    state: str
    lifecycle: Lifecycle
    relationships: AppRelationships
    metadata: Metadata
    links: dict[str, Link]


class HealthCheck(TypedDict):
    type: str
    data: dict[str, Any]


class ProcessRelationships(TypedDict):
    app: ToOne
    revision: ToOne


class Process(TypedDict):
    guid: str
    created_at: str
    updated_at: str
    type: str
    command: str | None
    instances: int
    memory_in_mb: int
    disk_in_mb: int
    log_rate_limit_in_bytes_per_second: int
    health_check: HealthCheck
    relationships: ProcessRelationships
    metadata: Metadata
    version: str
    links: dict[str, Link]


class AppEnv(TypedDict):
    """GET /v3/apps/:guid/env, in CF's grouping."""

    staging_env_json: dict[str, Any]
    running_env_json: dict[str, Any]
    environment_variables: dict[str, EnvValue]
    system_env_json: dict[str, Any]
    application_env_json: dict[str, Any]


class User(TypedDict):
    guid: str
    created_at: str
    updated_at: str
    username: str
    presentation_name: str
    origin: str
    metadata: Metadata
    links: dict[str, Link]


class RoleRelationships(TypedDict):
    user: ToOne
    organization: ToOne
    space: ToOne


class Role(TypedDict):
    guid: str
    created_at: str
    updated_at: str
    type: str
    relationships: RoleRelationships
    links: dict[str, Link]


class Domain(TypedDict):
    guid: str
    created_at: str
    updated_at: str
    name: str
    internal: bool
    supported_protocols: list[str]
    metadata: Metadata
    relationships: dict[str, Any]
    links: dict[str, Link]


class DestinationProcess(TypedDict):
    type: str


class DestinationApp(TypedDict):
    guid: str
    process: DestinationProcess


class RouteDestination(TypedDict):
    guid: str
    app: DestinationApp
    weight: int | None
    port: int
    protocol: str


class RouteDestinations(TypedDict):
    """GET|POST|PATCH /v3/routes/:guid/destinations."""

    destinations: list[RouteDestination]
    links: dict[str, Link]


class RouteRelationships(TypedDict):
    space: ToOne
    domain: ToOne


class Route(TypedDict):
    guid: str
    created_at: str
    updated_at: str
    protocol: str
    port: int | None
    host: str
    path: str
    url: str
    destinations: list[RouteDestination]
    options: dict[str, str]
    metadata: Metadata
    relationships: RouteRelationships
    links: dict[str, Link]


class AuditActor(TypedDict):
    guid: str
    type: str
    name: str


class AuditEvent(TypedDict):
    guid: str
    created_at: str
    updated_at: str
    type: str
    actor: AuditActor
    target: AuditActor
    data: dict[str, Any]
    space: GuidRef | None
    organization: GuidRef | None
    links: dict[str, Link]


class JobWarning(TypedDict):
    detail: str


class Job(TypedDict):
    """GET /v3/jobs/:guid. `state` is PROCESSING, POLLING, COMPLETE or FAILED."""

    guid: str
    created_at: str
    updated_at: str
    operation: str
    state: str
    errors: list[ErrorEntry]
    warnings: list[JobWarning]
    links: dict[str, Link]


class JobStage(TypedDict):
    name: str
    state: str
    progress: int
    detail: str | None
    started_at: str | None
    finished_at: str | None


class JobTarget(TypedDict):
    type: str
    guid: str


class JobCreator(TypedDict):
    guid: str | None
    name: str | None


class JobDetail(Job):
    """GET /v3/x/jobs: the CF job plus the engine's view (stages, queue, lease, attempts)."""

    engine_state: str
    queue: str
    target: JobTarget
    attempts: int
    max_attempts: int
    context_id: str
    creator: JobCreator
    lease_owner: str | None
    result: dict[str, Any] | None
    stages: list[JobStage]
    started_at: str | None
    finished_at: str | None
    lease_expires_at: str | None
    run_after: str | None


class Queue(TypedDict):
    """GET /v3/x/queues: one job queue with its depth and limit."""

    name: str
    concurrency: int
    queued: int
    running: int
    waiting: int
    oldest_queued_at: str | None
    completed_last_hour: int
    links: dict[str, Link]


class OAuthClient(TypedDict):
    """GET /v3/x/clients: an OAuth client that logs in with the client_credentials grant.
    Its secret is never returned (the server keeps only a hash)."""

    client_id: str
    created_at: str
    authorized_grant_types: list[str]
    authorities: list[str]
    links: dict[str, Link]


class LogEntry(TypedDict):
    """One line of GET /v3/x/apps/:guid/logs (and of its SSE stream)."""

    # RFC 3339 in UTC with nanoseconds ("2026-11-21T10:00:00.123456789Z").
    timestamp: str
    # The same instant as Unix time in nanoseconds.
    timestamp_ns: int
    # STG, APP/PROC/WEB/0, RTR, API, CELL, or LGR (the log system itself).
    source: str
    # stdout or stderr.
    stream: str
    line: str
    instance_guid: str | None


class InstancePort(TypedDict):
    external: int
    internal: int


class InstanceUsage(TypedDict, total=False):
    """Empty for an instance that is not running."""

    time: str
    # Fraction of one CPU (0.5 = half a core).
    cpu: float
    mem: int
    disk: int
    log_rate: int


class InstanceStats(TypedDict):
    """One instance of GET /v3/processes/:guid/stats. `state` is RUNNING, STARTING, CRASHED
    or DOWN; `uptime` in seconds; quotas in bytes."""

    type: str
    index: int
    state: str
    host: str
    instance_ports: list[InstancePort]
    uptime: int | float
    usage: InstanceUsage
    mem_quota: int | None
    disk_quota: int | None
    fds_quota: int | None
    isolation_segment: str | None
    details: str | None
    instance_guid: NotRequired[str]
    cell_id: NotRequired[str]


class CellResources(TypedDict):
    memory_in_mb: int
    disk_in_mb: int
    instances: int


class Cell(TypedDict):
    """GET /v3/x/cells (operators). `state`: ENABLED, DISABLED, DRAINING, DRAINED or LOST."""

    guid: str
    zone: str
    state: str
    host: str
    stacks: list[str]
    tags: list[str]
    capacity: CellResources
    allocated: CellResources
    instances: int
    last_heartbeat_at: str
    started_at: str
    links: dict[str, Link]


class DropletChecksum(TypedDict):
    type: str
    value: str


class DropletBuildpack(TypedDict):
    name: str
    detect_output: str | None
    buildpack_name: str | None
    version: str | None


class DropletRelationships(TypedDict):
    app: ToOne


class Droplet(TypedDict):
    """GET /v3/droplets/:guid (and /v3/apps/:guid/droplets/current). `state` is
    AWAITING_UPLOAD, PROCESSING_UPLOAD, STAGING, STAGED, FAILED or EXPIRED; `checksum` is null
    until the bits are stored."""

    guid: str
    state: str
    created_at: str
    stack: NotRequired[str | None]
    links: dict[str, Link]
    updated_at: NotRequired[str]
    error: NotRequired[str | None]
    lifecycle: NotRequired[dict[str, Any]]
    execution_metadata: NotRequired[str]
    process_types: NotRequired[dict[str, str]]
    checksum: NotRequired[DropletChecksum | None]
    buildpacks: NotRequired[list[DropletBuildpack]]
    image: NotRequired[str | None]
    relationships: NotRequired[DropletRelationships]
    metadata: NotRequired[Metadata]


class CurrentDropletRelationship(TypedDict):
    data: GuidRef | None
    links: dict[str, Link]


class PackageChecksum(TypedDict):
    type: str
    value: str | None


class PackageData(TypedDict):
    checksum: NotRequired[PackageChecksum]
    error: NotRequired[str | None]


class PackageRelationships(TypedDict):
    app: ToOne


class Package(TypedDict):
    """GET /v3/packages/:guid. `state` is AWAITING_UPLOAD, PROCESSING_UPLOAD, READY, FAILED or
    EXPIRED; `data.checksum.value` is null until the upload is processed, `data.error` says
    why a package FAILED."""

    guid: str
    type: str
    state: str
    created_at: str
    links: dict[str, Link]
    data: NotRequired[PackageData]
    updated_at: NotRequired[str]
    relationships: NotRequired[PackageRelationships]
    metadata: NotRequired[Metadata]


class ResourceChecksum(TypedDict):
    value: str


class MatchedResource(TypedDict):
    """An entry of POST /v3/resource_matches (and of an upload's `resources`)."""

    checksum: ResourceChecksum
    size_in_bytes: int
    path: NotRequired[str]
    mode: NotRequired[str]


class BuildCreator(TypedDict):
    guid: str | None
    name: str | None
    email: str | None


class BuildRelationships(TypedDict):
    app: ToOne


class Build(TypedDict):
    """GET /v3/builds/:guid. `state` is STAGING, STAGED or FAILED; `error` is CF's
    "<Reason> - detail" once a build FAILED (else null); `droplet` is null until STAGED."""

    guid: str
    state: str
    created_at: str
    updated_at: str
    error: str | None
    lifecycle: Lifecycle
    package: GuidRef
    droplet: GuidRef | None
    links: dict[str, Link]
    staging_memory_in_mb: NotRequired[int | None]
    staging_disk_in_mb: NotRequired[int | None]
    staging_log_rate_limit_bytes_per_second: NotRequired[int | None]
    created_by: NotRequired[BuildCreator]
    relationships: NotRequired[BuildRelationships]
    metadata: NotRequired[Metadata]


class Buildpack(TypedDict):
    """GET /v3/buildpacks: an admin buildpack. `state` is READY (AWAITING_UPLOAD in CF while
    it has no bits); `position` is the order automatic detection tries them in."""

    guid: str
    created_at: str
    updated_at: str
    name: str
    state: str
    filename: str | None
    stack: str | None
    position: int
    enabled: bool
    locked: bool
    links: dict[str, Link]
    lifecycle: NotRequired[str]
    metadata: NotRequired[Metadata]

"""Desired-state entities. Frozen dataclasses: a change is a new value, so store writes can
hand back (before, after) and events are built from the pair."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from overcast.models.lifecycle import AppState, BuildState, DropletState, PackageState
from overcast.models.roles import RoleType


@dataclass(frozen=True)
class Metadata:
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Organization:
    guid: str
    name: str
    created_at: datetime
    updated_at: datetime
    suspended: bool = False
    metadata: Metadata = field(default_factory=Metadata)


@dataclass(frozen=True)
class Space:
    guid: str
    name: str
    org_guid: str
    created_at: datetime
    updated_at: datetime
    metadata: Metadata = field(default_factory=Metadata)


@dataclass(frozen=True)
class App:
    guid: str
    name: str
    space_guid: str
    created_at: datetime
    updated_at: datetime
    state: AppState = AppState.STOPPED
    lifecycle_type: str = "buildpack"
    buildpacks: tuple[str, ...] = ()
    stack: str = "overcast-linux"
    environment_variables: dict[str, str] = field(default_factory=dict)
    current_droplet_guid: str | None = None
    metadata: Metadata = field(default_factory=Metadata)


class HealthCheckType(StrEnum):
    PORT = "port"
    HTTP = "http"
    PROCESS = "process"


@dataclass(frozen=True)
class HealthCheck:
    type: HealthCheckType = HealthCheckType.PORT
    endpoint: str | None = None
    timeout: int | None = None
    invocation_timeout: int | None = None
    interval: int | None = None


@dataclass(frozen=True)
class Process:
    guid: str
    app_guid: str
    type: str
    created_at: datetime
    updated_at: datetime
    # Bumped whenever the instances must be replaced (restart, new droplet): cells compare it.
    version: str
    command: str | None = None
    instances: int = 1
    memory_in_mb: int = 256
    disk_in_mb: int = 1024
    log_rate_limit_in_bytes_per_second: int = -1
    health_check: HealthCheck = field(default_factory=HealthCheck)
    metadata: Metadata = field(default_factory=Metadata)
    # Why the last placement of this process's instances failed (no cell fits), else None.
    placement_error: str | None = None


@dataclass(frozen=True)
class DropletBuildpack:
    """A buildpack that took part in staging a droplet (CF's `buildpacks` entries)."""

    name: str
    detect_output: str | None = None
    buildpack_name: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Droplet:
    """A staged, runnable app: a tarball in the blobstore plus what it runs (CF v3 droplet)."""

    guid: str
    app_guid: str
    created_at: datetime
    updated_at: datetime
    state: DropletState = DropletState.AWAITING_UPLOAD
    error: str | None = None
    lifecycle_type: str = "buildpack"
    # The lifecycle asked for (the app's buildpacks and stack when the droplet was made).
    lifecycle_buildpacks: tuple[str, ...] = ()
    stack: str | None = None
    execution_metadata: str = ""
    process_types: dict[str, str] = field(default_factory=dict)
    # sha256 (hex) of the tarball, known once it is stored.
    checksum: str | None = None
    size_in_bytes: int | None = None
    # The buildpacks staging detected and ran.
    buildpacks: tuple[DropletBuildpack, ...] = ()
    package_guid: str | None = None
    metadata: Metadata = field(default_factory=Metadata)


@dataclass(frozen=True)
class Package:
    """An app's source bits (CF v3 package, type `bits`): a list of files kept content-addressed
    in the blobstore, filled by an upload that a job checks (READY or FAILED)."""

    guid: str
    app_guid: str
    created_at: datetime
    updated_at: datetime
    type: str = "bits"
    state: PackageState = PackageState.AWAITING_UPLOAD
    error: str | None = None
    # sha256 (hex) of the package's canonical manifest (path -> sha1, size, mode), known once
    # the upload is processed: equal files give an equal checksum.
    checksum: str | None = None
    # The total size of the package's files, and how many there are.
    size_in_bytes: int | None = None
    file_count: int | None = None
    metadata: Metadata = field(default_factory=Metadata)


@dataclass(frozen=True)
class BuildCreator:
    """Who asked for a build (CF's `created_by`)."""

    guid: str
    name: str = ""
    email: str = ""


@dataclass(frozen=True)
class Build:
    """One staging of a package into a droplet (CF v3 build)."""

    guid: str
    app_guid: str
    package_guid: str
    created_at: datetime
    updated_at: datetime
    state: BuildState = BuildState.STAGING
    error: str | None = None
    lifecycle_type: str = "buildpack"
    lifecycle_buildpacks: tuple[str, ...] = ()
    stack: str | None = None
    staging_memory_in_mb: int = 1024
    staging_disk_in_mb: int = 4096
    # The droplet being made (STAGING with the build, then STAGED or FAILED).
    droplet_guid: str | None = None
    created_by: BuildCreator = field(default_factory=lambda: BuildCreator(guid=""))
    # The cell that accepted the staging, once one has.
    cell_id: str | None = None
    metadata: Metadata = field(default_factory=Metadata)


@dataclass(frozen=True)
class User:
    guid: str
    username: str
    created_at: datetime
    updated_at: datetime
    origin: str = "uaa"
    password_hash: str | None = field(default=None, repr=False)
    admin: bool = False
    metadata: Metadata = field(default_factory=Metadata)


@dataclass(frozen=True)
class Role:
    guid: str
    type: RoleType
    user_guid: str
    created_at: datetime
    updated_at: datetime
    org_guid: str | None = None
    space_guid: str | None = None


@dataclass(frozen=True)
class Domain:
    guid: str
    name: str
    created_at: datetime
    updated_at: datetime
    internal: bool = False
    # None for a shared domain; the owning org for a private one.
    org_guid: str | None = None
    metadata: Metadata = field(default_factory=Metadata)


@dataclass(frozen=True)
class Actor:
    guid: str
    type: str  # user | client | system
    name: str


@dataclass(frozen=True)
class AuditEvent:
    guid: str
    type: str
    actor: Actor
    target_guid: str
    target_type: str
    target_name: str
    created_at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    space_guid: str | None = None
    org_guid: str | None = None


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    created_at: datetime
    secret_hash: str | None = field(default=None, repr=False)
    authorized_grant_types: tuple[str, ...] = ()
    # Scopes a client_credentials token of this client carries (UAA "authorities").
    authorities: tuple[str, ...] = ()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    secret: str = field(repr=False)
    created_at: datetime | None = None


class LoadBalancing(StrEnum):
    """How the router spreads a route's requests over its endpoints (CF's
    `options.loadbalancing`)."""

    ROUND_ROBIN = "round-robin"
    LEAST_CONNECTION = "least-connection"


@dataclass(frozen=True)
class Route:
    """An HTTP route (CF v3): `host.domain/path`. The host is lower-case and may be empty (on a
    private domain) or `*` (a wildcard); the path is empty or starts with `/`."""

    guid: str
    host: str
    path: str
    domain_guid: str
    space_guid: str
    created_at: datetime
    updated_at: datetime
    # Always None: only HTTP domains exist, and HTTP routes have no port.
    port: int | None = None
    protocol: str = "http"
    # None: not set (the router uses round-robin).
    load_balancing: LoadBalancing | None = None
    metadata: Metadata = field(default_factory=Metadata)


@dataclass(frozen=True)
class RouteDestination:
    """One process type of one app that a route sends traffic to (CF v3 destination). The
    process need not exist yet: it is matched by type when it does."""

    guid: str
    route_guid: str
    app_guid: str
    created_at: datetime
    updated_at: datetime
    process_type: str = "web"
    # Informational: the port the app listens on in its container.
    port: int = 8080
    protocol: str = "http1"
    weight: int | None = None

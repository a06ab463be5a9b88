"""Request bodies. Strict: unknown fields, wrong types and out-of-range values are refused
(422) before any use case runs."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(max_length=255)]
Guid = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetadataValues = dict[Annotated[str, StringConstraints(max_length=317)], str | None]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class MetadataBody(Body):
    labels: MetadataValues | None = None
    annotations: MetadataValues | None = None


class GuidRef(Body):
    guid: Guid


class ToOne(Body):
    data: GuidRef


class CreateOrganization(Body):
    name: Name
    suspended: bool = False
    metadata: MetadataBody | None = None


class UpdateOrganization(Body):
    name: Name | None = None
    suspended: bool | None = None
    metadata: MetadataBody | None = None


class SpaceRelationships(Body):
    organization: ToOne


class CreateSpace(Body):
    name: Name
    relationships: SpaceRelationships
    metadata: MetadataBody | None = None


class UpdateSpace(Body):
    name: Name | None = None
    metadata: MetadataBody | None = None


class AppRelationships(Body):
    space: ToOne


class LifecycleData(Body):
    buildpacks: list[Annotated[str, StringConstraints(max_length=4096)]] | None = None
    stack: Annotated[str, StringConstraints(max_length=255)] | None = None


class LifecycleBody(Body):
    type: Annotated[str, StringConstraints(max_length=32)] = "buildpack"
    data: LifecycleData = Field(default_factory=LifecycleData)


EnvValue = str | int | float | bool | None
EnvVars = dict[Annotated[str, StringConstraints(max_length=1024)], EnvValue]


class CreateApp(Body):
    name: Name
    relationships: AppRelationships
    environment_variables: EnvVars | None = None
    lifecycle: LifecycleBody | None = None
    metadata: MetadataBody | None = None


class UpdateApp(Body):
    name: Name | None = None
    lifecycle: LifecycleBody | None = None
    metadata: MetadataBody | None = None


class EnvironmentVariables(Body):
    var: EnvVars


class ScaleProcess(Body):
    instances: int | None = None
    memory_in_mb: int | None = None
    disk_in_mb: int | None = None
    log_rate_limit_in_bytes_per_second: int | None = None


class HealthCheckData(Body):
    timeout: int | None = None
    invocation_timeout: int | None = None
    interval: int | None = None
    endpoint: Annotated[str, StringConstraints(max_length=255)] | None = None


class HealthCheckBody(Body):
    type: Annotated[str, StringConstraints(max_length=16)] | None = None
    data: HealthCheckData | None = None


class UpdateProcess(Body):
    command: Annotated[str, StringConstraints(max_length=4096)] | None = None
    health_check: HealthCheckBody | None = None
    metadata: MetadataBody | None = None


class UserRef(Body):
    guid: Guid | None = None
    username: Name | None = None
    origin: Annotated[str, StringConstraints(max_length=64)] | None = None


class UserToOne(Body):
    data: UserRef


class RoleRelationships(Body):
    user: UserToOne
    organization: ToOne | None = None
    space: ToOne | None = None


class CreateRole(Body):
    type: Annotated[str, StringConstraints(max_length=64)]
    relationships: RoleRelationships


class CreateUser(Body):
    """CF takes `guid` (a UAA user) or `username`+`origin`; Overcast is its own UAA, so it
    also takes `password` (and `admin`), which CF has no place for."""

    username: Name
    origin: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "uaa"
    password: Annotated[str, StringConstraints(max_length=1024)] | None = None
    admin: bool = False
    metadata: MetadataBody | None = None


class UpdateUser(Body):
    password: Annotated[str, StringConstraints(max_length=1024)] | None = None
    metadata: MetadataBody | None = None


class UpdateQueue(Body):
    concurrency: int


class CreateClient(Body):
    client_id: Annotated[str, StringConstraints(max_length=255)]
    client_secret: Annotated[str, StringConstraints(max_length=1024)]
    authorities: list[Annotated[str, StringConstraints(max_length=255)]] = Field(
        default_factory=list
    )


ProcessTypes = dict[
    Annotated[str, StringConstraints(min_length=1, max_length=63)],
    Annotated[str, StringConstraints(min_length=1, max_length=4096)],
]


class DropletRelationships(Body):
    app: ToOne


class CreateDroplet(Body):
    relationships: DropletRelationships
    process_types: ProcessTypes | None = None
    metadata: MetadataBody | None = None


class UpdateDroplet(Body):
    metadata: MetadataBody | None = None


class CurrentDroplet(Body):
    data: GuidRef


class CreateBuild(Body):
    package: GuidRef
    lifecycle: LifecycleBody | None = None
    staging_memory_in_mb: int | None = None
    staging_disk_in_mb: int | None = None
    # Accepted for CF clients; staging output is not rate limited.
    staging_log_rate_limit_bytes_per_second: int | None = None
    metadata: MetadataBody | None = None


class UpdateBuild(Body):
    metadata: MetadataBody | None = None


class PackageRelationships(Body):
    app: ToOne


class CreatePackage(Body):
    type: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    relationships: PackageRelationships
    # Docker packages' image and credentials (refused: only `bits` packages are supported).
    data: dict[str, str | None] | None = None
    metadata: MetadataBody | None = None


class UpdatePackage(Body):
    metadata: MetadataBody | None = None


# The cap of POST /v3/resource_matches (also enforced by the use case, from settings).
MAX_RESOURCE_MATCHES = 10_000


class ResourceChecksum(Body):
    value: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{40}$")]


class MatchResource(Body):
    checksum: ResourceChecksum
    size_in_bytes: Annotated[int, Field(ge=0, le=2**63 - 1)]
    path: Annotated[str, StringConstraints(max_length=4096)] | None = None
    mode: Annotated[str, StringConstraints(max_length=16)] | None = None


class ResourceMatches(Body):
    resources: Annotated[list[MatchResource], Field(max_length=MAX_RESOURCE_MATCHES)]


class ToOneOrNull(Body):
    data: GuidRef | None = None


class ToMany(Body):
    data: Annotated[list[GuidRef], Field(max_length=1000)]


class DomainRelationships(Body):
    # cloudfoundry-client sends `"organization": null` for a shared domain.
    organization: ToOneOrNull | None = None
    shared_organizations: ToMany | None = None


class CreateDomain(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    internal: bool = False
    relationships: DomainRelationships | None = None
    metadata: MetadataBody | None = None


class UpdateDomain(Body):
    metadata: MetadataBody | None = None


class RouteOptions(Body):
    loadbalancing: Annotated[str, StringConstraints(max_length=32)] | None = None


class RouteRelationships(Body):
    space: ToOne
    domain: ToOne


class CreateRoute(Body):
    host: Annotated[str, StringConstraints(max_length=253)] | None = None
    path: Annotated[str, StringConstraints(max_length=4096)] | None = None
    port: int | None = None
    options: RouteOptions | None = None
    relationships: RouteRelationships
    metadata: MetadataBody | None = None


class UpdateRoute(Body):
    options: RouteOptions | None = None
    metadata: MetadataBody | None = None


class DestinationProcess(Body):
    type: Annotated[str, StringConstraints(min_length=1, max_length=255)]


class DestinationApp(Body):
    guid: Guid
    process: DestinationProcess | None = None


class DestinationBody(Body):
    app: DestinationApp
    port: int | None = None
    protocol: Annotated[str, StringConstraints(max_length=16)] | None = None
    weight: int | None = None


# The most destinations one request may name.
MAX_DESTINATIONS = 1000


class RouteDestinations(Body):
    destinations: Annotated[list[DestinationBody], Field(max_length=MAX_DESTINATIONS)]

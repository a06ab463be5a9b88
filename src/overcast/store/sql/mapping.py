"""Rows <-> domain values. One pair of functions per entity, nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from overcast.models.jobs import Job, JobError, Stage
from overcast.models.lifecycle import (
    AppState,
    BuildState,
    DropletState,
    JobState,
    PackageState,
    StageState,
)
from overcast.models.resources import (
    Actor,
    App,
    AuditEvent,
    Build,
    BuildCreator,
    Domain,
    Droplet,
    DropletBuildpack,
    HealthCheck,
    HealthCheckType,
    LoadBalancing,
    Metadata,
    Organization,
    Package,
    Process,
    Role,
    Route,
    RouteDestination,
    Space,
    User,
)
from overcast.models.roles import RoleType

Row = Mapping[Any, Any]


def _meta(row: Row) -> Metadata:
    return Metadata(labels=dict(row["labels"] or {}), annotations=dict(row["annotations"] or {}))


def _meta_row(metadata: Metadata) -> dict[str, Any]:
    return {"labels": dict(metadata.labels), "annotations": dict(metadata.annotations)}


def _stamps(item: Any) -> dict[str, Any]:
    return {"guid": item.guid, "created_at": item.created_at, "updated_at": item.updated_at}


def org_to_row(org: Organization) -> dict[str, Any]:
    return {
        **_stamps(org),
        "name": org.name,
        "name_lower": org.name.lower(),
        "suspended": org.suspended,
        **_meta_row(org.metadata),
    }


def org_from_row(row: Row) -> Organization:
    return Organization(
        guid=row["guid"],
        name=row["name"],
        suspended=bool(row["suspended"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=_meta(row),
    )


def space_to_row(space: Space) -> dict[str, Any]:
    return {
        **_stamps(space),
        "name": space.name,
        "name_lower": space.name.lower(),
        "org_guid": space.org_guid,
        **_meta_row(space.metadata),
    }


def space_from_row(row: Row) -> Space:
    return Space(
        guid=row["guid"],
        name=row["name"],
        org_guid=row["org_guid"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=_meta(row),
    )


def app_to_row(app: App) -> dict[str, Any]:
    return {
        **_stamps(app),
        "name": app.name,
        "name_lower": app.name.lower(),
        "space_guid": app.space_guid,
        "state": app.state.value,
        "lifecycle_type": app.lifecycle_type,
        "buildpacks": list(app.buildpacks),
        "stack": app.stack,
        "environment_variables": dict(app.environment_variables),
        "current_droplet_guid": app.current_droplet_guid,
        **_meta_row(app.metadata),
    }


def app_from_row(row: Row) -> App:
    return App(
        guid=row["guid"],
        name=row["name"],
        space_guid=row["space_guid"],
        state=AppState(row["state"]),
        lifecycle_type=row["lifecycle_type"],
        buildpacks=tuple(row["buildpacks"] or ()),
        stack=row["stack"],
        environment_variables=dict(row["environment_variables"] or {}),
        current_droplet_guid=row["current_droplet_guid"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=_meta(row),
    )


def process_to_row(process: Process) -> dict[str, Any]:
    check = process.health_check
    return {
        **_stamps(process),
        "app_guid": process.app_guid,
        "type": process.type,
        "version": process.version,
        "command": process.command,
        "instances": process.instances,
        "memory_in_mb": process.memory_in_mb,
        "disk_in_mb": process.disk_in_mb,
        "log_rate_limit": process.log_rate_limit_in_bytes_per_second,
        "health_check_type": check.type.value,
        "health_check_endpoint": check.endpoint,
        "health_check_timeout": check.timeout,
        "health_check_invocation_timeout": check.invocation_timeout,
        "health_check_interval": check.interval,
        "placement_error": process.placement_error,
        **_meta_row(process.metadata),
    }


def process_from_row(row: Row) -> Process:
    return Process(
        guid=row["guid"],
        app_guid=row["app_guid"],
        type=row["type"],
        version=row["version"],
        command=row["command"],
        instances=row["instances"],
        memory_in_mb=row["memory_in_mb"],
        disk_in_mb=row["disk_in_mb"],
        log_rate_limit_in_bytes_per_second=row["log_rate_limit"],
        health_check=HealthCheck(
            type=HealthCheckType(row["health_check_type"]),
            endpoint=row["health_check_endpoint"],
            timeout=row["health_check_timeout"],
            invocation_timeout=row["health_check_invocation_timeout"],
            interval=row["health_check_interval"],
        ),
        placement_error=row["placement_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=_meta(row),
    )


def _buildpack_to_json(buildpack: DropletBuildpack) -> dict[str, Any]:
    return {
        "name": buildpack.name,
        "detect_output": buildpack.detect_output,
        "buildpack_name": buildpack.buildpack_name,
        "version": buildpack.version,
    }


def _buildpack_from_json(data: Mapping[Any, Any]) -> DropletBuildpack:
    return DropletBuildpack(
        name=data["name"],
        detect_output=data.get("detect_output"),
        buildpack_name=data.get("buildpack_name"),
        version=data.get("version"),
    )


def droplet_to_row(droplet: Droplet) -> dict[str, Any]:
    return {
        **_stamps(droplet),
        "app_guid": droplet.app_guid,
        "state": droplet.state.value,
        "error": droplet.error,
        "lifecycle_type": droplet.lifecycle_type,
        "lifecycle_buildpacks": list(droplet.lifecycle_buildpacks),
        "stack": droplet.stack,
        "execution_metadata": droplet.execution_metadata,
        "process_types": dict(droplet.process_types),
        "checksum": droplet.checksum,
        "size_in_bytes": droplet.size_in_bytes,
        "buildpacks": [_buildpack_to_json(b) for b in droplet.buildpacks],
        "package_guid": droplet.package_guid,
        **_meta_row(droplet.metadata),
    }


def droplet_from_row(row: Row) -> Droplet:
    return Droplet(
        guid=row["guid"],
        app_guid=row["app_guid"],
        state=DropletState(row["state"]),
        error=row["error"],
        lifecycle_type=row["lifecycle_type"],
        lifecycle_buildpacks=tuple(row["lifecycle_buildpacks"] or ()),
        stack=row["stack"],
        execution_metadata=row["execution_metadata"],
        process_types=dict(row["process_types"] or {}),
        checksum=row["checksum"],
        size_in_bytes=row["size_in_bytes"],
        buildpacks=tuple(_buildpack_from_json(b) for b in row["buildpacks"] or ()),
        package_guid=row["package_guid"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=_meta(row),
    )


def build_to_row(build: Build) -> dict[str, Any]:
    creator = build.created_by
    return {
        **_stamps(build),
        "app_guid": build.app_guid,
        "package_guid": build.package_guid,
        "state": build.state.value,
        "error": build.error,
        "lifecycle_type": build.lifecycle_type,
        "lifecycle_buildpacks": list(build.lifecycle_buildpacks),
        "stack": build.stack,
        "staging_memory_in_mb": build.staging_memory_in_mb,
        "staging_disk_in_mb": build.staging_disk_in_mb,
        "droplet_guid": build.droplet_guid,
        "created_by": {"guid": creator.guid, "name": creator.name, "email": creator.email},
        "cell_id": build.cell_id,
        **_meta_row(build.metadata),
    }


def build_from_row(row: Row) -> Build:
    creator = row["created_by"] or {}
    return Build(
        guid=row["guid"],
        app_guid=row["app_guid"],
        package_guid=row["package_guid"],
        state=BuildState(row["state"]),
        error=row["error"],
        lifecycle_type=row["lifecycle_type"],
        lifecycle_buildpacks=tuple(row["lifecycle_buildpacks"] or ()),
        stack=row["stack"],
        staging_memory_in_mb=row["staging_memory_in_mb"],
        staging_disk_in_mb=row["staging_disk_in_mb"],
        droplet_guid=row["droplet_guid"],
        created_by=BuildCreator(
            guid=str(creator.get("guid", "")),
            name=str(creator.get("name", "")),
            email=str(creator.get("email", "")),
        ),
        cell_id=row["cell_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=_meta(row),
    )


def package_to_row(package: Package) -> dict[str, Any]:
    return {
        **_stamps(package),
        "app_guid": package.app_guid,
        "type": package.type,
        "state": package.state.value,
        "error": package.error,
        "checksum": package.checksum,
        "size_in_bytes": package.size_in_bytes,
        "file_count": package.file_count,
        **_meta_row(package.metadata),
    }


def package_from_row(row: Row) -> Package:
    return Package(
        guid=row["guid"],
        app_guid=row["app_guid"],
        type=row["type"],
        state=PackageState(row["state"]),
        error=row["error"],
        checksum=row["checksum"],
        size_in_bytes=row["size_in_bytes"],
        file_count=row["file_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=_meta(row),
    )


def user_to_row(user: User) -> dict[str, Any]:
    return {
        **_stamps(user),
        "username": user.username,
        "username_lower": user.username.lower(),
        "origin": user.origin,
        "password_hash": user.password_hash,
        "admin": user.admin,
        **_meta_row(user.metadata),
    }


def user_from_row(row: Row) -> User:
    return User(
        guid=row["guid"],
        username=row["username"],
        origin=row["origin"],
        password_hash=row["password_hash"],
        admin=bool(row["admin"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=_meta(row),
    )


def role_to_row(role: Role) -> dict[str, Any]:
    return {
        **_stamps(role),
        "type": role.type.value,
        "user_guid": role.user_guid,
        "org_guid": role.org_guid,
        "space_guid": role.space_guid,
        "scope_guid": role.org_guid or role.space_guid or "",
    }


def role_from_row(row: Row) -> Role:
    return Role(
        guid=row["guid"],
        type=RoleType(row["type"]),
        user_guid=row["user_guid"],
        org_guid=row["org_guid"],
        space_guid=row["space_guid"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def domain_to_row(domain: Domain) -> dict[str, Any]:
    return {
        **_stamps(domain),
        "name": domain.name,
        "name_lower": domain.name.lower(),
        "internal": domain.internal,
        "org_guid": domain.org_guid,
        **_meta_row(domain.metadata),
    }


def domain_from_row(row: Row) -> Domain:
    return Domain(
        guid=row["guid"],
        name=row["name"],
        internal=bool(row["internal"]),
        org_guid=row["org_guid"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=_meta(row),
    )


def route_to_row(route: Route) -> dict[str, Any]:
    return {
        **_stamps(route),
        "host": route.host,
        "path": route.path,
        "path_lower": route.path.lower(),
        "port": route.port,
        "protocol": route.protocol,
        "domain_guid": route.domain_guid,
        "space_guid": route.space_guid,
        "load_balancing": route.load_balancing.value if route.load_balancing else None,
        **_meta_row(route.metadata),
    }


def route_from_row(row: Row) -> Route:
    balancing = row["load_balancing"]
    return Route(
        guid=row["guid"],
        host=row["host"],
        path=row["path"],
        port=row["port"],
        protocol=row["protocol"],
        domain_guid=row["domain_guid"],
        space_guid=row["space_guid"],
        load_balancing=LoadBalancing(balancing) if balancing else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=_meta(row),
    )


def destination_to_row(destination: RouteDestination) -> dict[str, Any]:
    return {
        **_stamps(destination),
        "route_guid": destination.route_guid,
        "app_guid": destination.app_guid,
        "process_type": destination.process_type,
        "port": destination.port,
        "protocol": destination.protocol,
        "weight": destination.weight,
    }


def destination_from_row(row: Row) -> RouteDestination:
    return RouteDestination(
        guid=row["guid"],
        route_guid=row["route_guid"],
        app_guid=row["app_guid"],
        process_type=row["process_type"],
        port=row["port"],
        protocol=row["protocol"],
        weight=row["weight"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def event_to_row(event: AuditEvent) -> dict[str, Any]:
    return {
        "guid": event.guid,
        "type": event.type,
        "actor_guid": event.actor.guid,
        "actor_type": event.actor.type,
        "actor_name": event.actor.name,
        "target_guid": event.target_guid,
        "target_type": event.target_type,
        "target_name": event.target_name,
        "data": event.data,
        "space_guid": event.space_guid,
        "org_guid": event.org_guid,
        "created_at": event.created_at,
        "updated_at": event.created_at,
    }


def event_from_row(row: Row) -> AuditEvent:
    return AuditEvent(
        guid=row["guid"],
        type=row["type"],
        actor=Actor(guid=row["actor_guid"], type=row["actor_type"], name=row["actor_name"]),
        target_guid=row["target_guid"],
        target_type=row["target_type"],
        target_name=row["target_name"],
        data=dict(row["data"] or {}),
        space_guid=row["space_guid"],
        org_guid=row["org_guid"],
        created_at=row["created_at"],
    )


def _time_text(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _time_value(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _stage_to_json(stage: Stage) -> dict[str, Any]:
    return {
        "name": stage.name,
        "state": stage.state.value,
        "progress": stage.progress,
        "detail": stage.detail,
        "started_at": _time_text(stage.started_at),
        "finished_at": _time_text(stage.finished_at),
    }


def _stage_from_json(data: Mapping[Any, Any]) -> Stage:
    return Stage(
        name=data["name"],
        state=StageState(data["state"]),
        progress=int(data.get("progress", 0)),
        detail=data.get("detail"),
        started_at=_time_value(data.get("started_at")),
        finished_at=_time_value(data.get("finished_at")),
    )


def job_to_row(job: Job) -> dict[str, Any]:
    return {
        **_stamps(job),
        "operation": job.operation,
        "queue": job.queue,
        "target_type": job.target_type,
        "target_guid": job.target_guid,
        "target_key": job.target_key,
        "state": job.state.value,
        "stages": [_stage_to_json(stage) for stage in job.stages],
        "params": job.params,
        "dedupe_key": job.dedupe_key,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "context_id": job.context_id,
        "creator_guid": job.creator_guid,
        "creator_name": job.creator_name,
        "errors": [{"kind": error.kind, "detail": error.detail} for error in job.errors],
        "warnings": list(job.warnings),
        "result": job.result,
        "lease_owner": job.lease_owner,
        "lease_expires_at": job.lease_expires_at,
        "run_after": job.run_after,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "version": job.version,
    }


def job_from_row(row: Row) -> Job:
    return Job(
        guid=row["guid"],
        operation=row["operation"],
        queue=row["queue"],
        target_type=row["target_type"],
        target_guid=row["target_guid"],
        state=JobState(row["state"]),
        stages=tuple(_stage_from_json(stage) for stage in row["stages"] or ()),
        params=dict(row["params"] or {}),
        dedupe_key=row["dedupe_key"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        context_id=row["context_id"],
        creator_guid=row["creator_guid"],
        creator_name=row["creator_name"],
        errors=tuple(JobError(kind=e["kind"], detail=e["detail"]) for e in row["errors"] or ()),
        warnings=tuple(row["warnings"] or ()),
        result=dict(row["result"] or {}),
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        run_after=row["run_after"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )

"""Domain values -> CF v3 JSON. Every link is an object with an absolute href (never null);
action links carry `"method": "POST"`; timestamps are `YYYY-MM-DDThh:mm:ssZ`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from overcast.api.errors import job_error_json
from overcast.controller.buildpacks import InstalledBuildpack
from overcast.controller.routes import RouteView
from overcast.models.jobs import Job, QueueStats
from overcast.models.lifecycle import cf_job_state
from overcast.models.query import ListQuery, Page
from overcast.models.resources import (
    App,
    AuditEvent,
    Build,
    Domain,
    Droplet,
    Metadata,
    OAuthClient,
    Organization,
    Package,
    Process,
    Role,
    RouteDestination,
    Space,
    User,
)

T = TypeVar("T")
Json = dict[str, Any]

# CF hides process commands in lists: they may hold secrets and lists are widely readable.
HIDDEN_IN_LISTS = "[PRIVATE DATA HIDDEN IN LISTS]"


class Urls:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def href(
        self, path: str, query: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None
    ) -> str:
        url = f"{self.base}{path}"
        return f"{url}?{urlencode(query, doseq=True)}" if query else url

    def link(self, path: str, *, method: str | None = None) -> Json:
        link: Json = {"href": self.href(path)}
        if method:
            link["method"] = method
        return link


def timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _metadata(metadata: Metadata) -> Json:
    return {"labels": dict(metadata.labels), "annotations": dict(metadata.annotations)}


def _to_one(guid: str | None) -> Json:
    return {"data": {"guid": guid} if guid else None}


def _stamps(item: Any) -> Json:
    return {
        "guid": item.guid,
        "created_at": timestamp(item.created_at),
        "updated_at": timestamp(item.updated_at),
    }


def organization(org: Organization, urls: Urls) -> Json:
    path = f"/v3/organizations/{org.guid}"
    return {
        **_stamps(org),
        "name": org.name,
        "suspended": org.suspended,
        "relationships": {},
        "metadata": _metadata(org.metadata),
        "links": {
            "self": urls.link(path),
            "domains": urls.link(f"{path}/domains"),
            "default_domain": urls.link(f"{path}/domains/default"),
        },
    }


def space(item: Space, urls: Urls) -> Json:
    return {
        **_stamps(item),
        "name": item.name,
        "relationships": {"organization": _to_one(item.org_guid)},
        "metadata": _metadata(item.metadata),
        "links": {
            "self": urls.link(f"/v3/spaces/{item.guid}"),
            "organization": urls.link(f"/v3/organizations/{item.org_guid}"),
        },
    }


def app(item: App, urls: Urls) -> Json:
    path = f"/v3/apps/{item.guid}"
    return {
        **_stamps(item),
        "name": item.name,
        "state": item.state.value,
        "lifecycle": {
            "type": item.lifecycle_type,
            "data": {"buildpacks": list(item.buildpacks), "stack": item.stack},
        },
        "relationships": {"space": _to_one(item.space_guid)},
        "metadata": _metadata(item.metadata),
        "links": {
            "self": urls.link(path),
            "space": urls.link(f"/v3/spaces/{item.space_guid}"),
            "processes": urls.link(f"{path}/processes"),
            "environment_variables": urls.link(f"{path}/environment_variables"),
            "current_droplet": urls.link(f"{path}/droplets/current"),
            "droplets": urls.link(f"{path}/droplets"),
            "start": urls.link(f"{path}/actions/start", method="POST"),
            "stop": urls.link(f"{path}/actions/stop", method="POST"),
        },
    }


def process(item: Process, urls: Urls, *, in_list: bool = False) -> Json:
    check = item.health_check
    check_data: Json = {
        "timeout": check.timeout,
        "invocation_timeout": check.invocation_timeout,
        "interval": check.interval,
    }
    if check.type.value == "http":
        check_data["endpoint"] = check.endpoint or "/"
    path = f"/v3/processes/{item.guid}"
    command = item.command
    if in_list and command is not None:
        command = HIDDEN_IN_LISTS
    return {
        **_stamps(item),
        "type": item.type,
        "command": command,
        "instances": item.instances,
        "memory_in_mb": item.memory_in_mb,
        "disk_in_mb": item.disk_in_mb,
        "log_rate_limit_in_bytes_per_second": item.log_rate_limit_in_bytes_per_second,
        "health_check": {"type": check.type.value, "data": check_data},
        "readiness_health_check": {
            "type": "process",
            "data": {"invocation_timeout": None, "interval": None},
        },
        "relationships": {"app": _to_one(item.app_guid), "revision": {"data": None}},
        "metadata": _metadata(item.metadata),
        "version": item.version,
        "links": {
            "self": urls.link(path),
            "scale": urls.link(f"{path}/actions/scale", method="POST"),
            "app": urls.link(f"/v3/apps/{item.app_guid}"),
        },
    }


def droplet(item: Droplet, urls: Urls) -> Json:
    """A droplet exactly as CF v3 shows it (`checksum` is null until the bits are stored;
    `upload` only while awaiting them, `download` only once STAGED)."""
    path = f"/v3/droplets/{item.guid}"
    app_path = f"/v3/apps/{item.app_guid}"
    links: Json = {
        "self": urls.link(path),
        "app": urls.link(app_path),
        "assign_current_droplet": urls.link(
            f"{app_path}/relationships/current_droplet", method="PATCH"
        ),
    }
    if item.package_guid:
        links["package"] = urls.link(f"/v3/packages/{item.package_guid}")
    if item.state.value == "AWAITING_UPLOAD":
        links["upload"] = urls.link(f"{path}/upload", method="POST")
    if item.state.value == "STAGED":
        links["download"] = urls.link(f"{path}/download")
    return {
        **_stamps(item),
        "state": item.state.value,
        "error": item.error,
        "lifecycle": {
            "type": item.lifecycle_type,
            "data": {"buildpacks": list(item.lifecycle_buildpacks), "stack": item.stack},
        },
        "execution_metadata": item.execution_metadata,
        "process_types": dict(item.process_types),
        "checksum": {"type": "sha256", "value": item.checksum} if item.checksum else None,
        "buildpacks": [
            {
                "name": buildpack.name,
                "detect_output": buildpack.detect_output,
                "buildpack_name": buildpack.buildpack_name,
                "version": buildpack.version,
            }
            for buildpack in item.buildpacks
        ],
        "stack": item.stack,
        "image": None,
        "relationships": {"app": _to_one(item.app_guid)},
        "metadata": _metadata(item.metadata),
        "links": links,
    }


def package(item: Package, urls: Urls) -> Json:
    """A package exactly as CF v3 shows a `bits` package (`data.checksum.value` is null until
    the upload is processed)."""
    path = f"/v3/packages/{item.guid}"
    return {
        **_stamps(item),
        "type": item.type,
        "data": {
            "checksum": {"type": "sha256", "value": item.checksum},
            "error": item.error,
        },
        "state": item.state.value,
        "relationships": {"app": _to_one(item.app_guid)},
        "metadata": _metadata(item.metadata),
        "links": {
            "self": urls.link(path),
            "upload": urls.link(f"{path}/upload", method="POST"),
            "download": urls.link(f"{path}/download"),
            "app": urls.link(f"/v3/apps/{item.app_guid}"),
        },
    }


def build(item: Build, urls: Urls) -> Json:
    """A build as CF v3 shows it (`droplet` is null until STAGED)."""
    links: Json = {
        "self": urls.link(f"/v3/builds/{item.guid}"),
        "app": urls.link(f"/v3/apps/{item.app_guid}"),
    }
    staged = item.state.value == "STAGED" and item.droplet_guid
    if staged:
        links["droplet"] = urls.link(f"/v3/droplets/{item.droplet_guid}")
    creator = item.created_by
    return {
        **_stamps(item),
        "state": item.state.value,
        "staging_memory_in_mb": item.staging_memory_in_mb,
        "staging_disk_in_mb": item.staging_disk_in_mb,
        "staging_log_rate_limit_bytes_per_second": -1,
        "error": item.error,
        "lifecycle": {
            "type": item.lifecycle_type,
            "data": {"buildpacks": list(item.lifecycle_buildpacks), "stack": item.stack},
        },
        "package": {"guid": item.package_guid},
        "droplet": {"guid": item.droplet_guid} if staged else None,
        "created_by": {"guid": creator.guid, "name": creator.name, "email": creator.email},
        "relationships": {"app": _to_one(item.app_guid)},
        "metadata": _metadata(item.metadata),
        "links": links,
    }


def buildpack(item: InstalledBuildpack, urls: Urls) -> Json:
    """An installed buildpack as CF v3 shows an admin buildpack (READY, enabled, locked)."""
    version = f"-v{item.version}" if item.version else ""
    return {
        "guid": item.guid,
        "created_at": timestamp(item.created_at),
        "updated_at": timestamp(item.created_at),
        "name": item.name,
        "state": "READY",
        "filename": f"{item.name}_buildpack{version}.zip",
        "stack": item.stack,
        "position": item.position,
        "lifecycle": "buildpack",
        "enabled": True,
        "locked": True,
        "metadata": {"labels": {}, "annotations": {}},
        "links": {"self": urls.link(f"/v3/buildpacks/{item.guid}")},
    }


def current_droplet_relationship(app_guid: str, droplet_guid: str | None, urls: Urls) -> Json:
    path = f"/v3/apps/{app_guid}"
    return {
        "data": {"guid": droplet_guid} if droplet_guid else None,
        "links": {
            "self": urls.link(f"{path}/relationships/current_droplet"),
            "related": urls.link(f"{path}/droplets/current"),
        },
    }


def user(item: User, urls: Urls) -> Json:
    return {
        **_stamps(item),
        "username": item.username,
        "presentation_name": item.username,
        "origin": item.origin,
        "metadata": _metadata(item.metadata),
        "links": {"self": urls.link(f"/v3/users/{item.guid}")},
    }


def role(item: Role, urls: Urls) -> Json:
    links: Json = {
        "self": urls.link(f"/v3/roles/{item.guid}"),
        "user": urls.link(f"/v3/users/{item.user_guid}"),
    }
    if item.org_guid:
        links["organization"] = urls.link(f"/v3/organizations/{item.org_guid}")
    if item.space_guid:
        links["space"] = urls.link(f"/v3/spaces/{item.space_guid}")
    return {
        **_stamps(item),
        "type": item.type.value,
        "relationships": {
            "user": _to_one(item.user_guid),
            "organization": _to_one(item.org_guid),
            "space": _to_one(item.space_guid),
        },
        "links": links,
    }


def domain(item: Domain, urls: Urls) -> Json:
    links: Json = {"self": urls.link(f"/v3/domains/{item.guid}")}
    if item.org_guid:
        links["organization"] = urls.link(f"/v3/organizations/{item.org_guid}")
    return {
        **_stamps(item),
        "name": item.name,
        "internal": item.internal,
        "router_group": None,
        "supported_protocols": ["http"],
        "metadata": _metadata(item.metadata),
        "relationships": {
            "organization": _to_one(item.org_guid),
            "shared_organizations": {"data": []},
        },
        "links": links,
    }


def destination(item: RouteDestination) -> Json:
    """A route destination as CF v3 shows it (weights are not supported: always null)."""
    return {
        "guid": item.guid,
        "app": {"guid": item.app_guid, "process": {"type": item.process_type}},
        "weight": item.weight,
        "port": item.port,
        "protocol": item.protocol,
    }


def route(item: RouteView, urls: Urls) -> Json:
    value = item.route
    path = f"/v3/routes/{value.guid}"
    return {
        **_stamps(value),
        "protocol": value.protocol,
        "port": value.port,
        "host": value.host,
        "path": value.path,
        "url": item.url,
        "destinations": [destination(d) for d in item.destinations],
        "options": {"loadbalancing": value.load_balancing.value} if value.load_balancing else {},
        "metadata": _metadata(value.metadata),
        "relationships": {
            "space": _to_one(value.space_guid),
            "domain": _to_one(value.domain_guid),
        },
        "links": {
            "self": urls.link(path),
            "space": urls.link(f"/v3/spaces/{value.space_guid}"),
            "domain": urls.link(f"/v3/domains/{value.domain_guid}"),
            "destinations": urls.link(f"{path}/destinations"),
        },
    }


def route_destinations(item: RouteView, urls: Urls) -> Json:
    """`GET|POST|PATCH /v3/routes/:guid/destinations`: every destination of the route."""
    path = f"/v3/routes/{item.route.guid}"
    return {
        "destinations": [destination(d) for d in item.destinations],
        "links": {"self": urls.link(f"{path}/destinations"), "route": urls.link(path)},
    }


def audit_event(item: AuditEvent, urls: Urls) -> Json:
    return {
        "guid": item.guid,
        "created_at": timestamp(item.created_at),
        "updated_at": timestamp(item.created_at),
        "type": item.type,
        "actor": {"guid": item.actor.guid, "type": item.actor.type, "name": item.actor.name},
        "target": {"guid": item.target_guid, "type": item.target_type, "name": item.target_name},
        "data": item.data,
        "space": {"guid": item.space_guid} if item.space_guid else None,
        "organization": {"guid": item.org_guid} if item.org_guid else None,
        "links": {"self": urls.link(f"/v3/audit_events/{item.guid}")},
    }


_TARGET_PATHS = {
    "app": "apps",
    "droplet": "droplets",
    "package": "packages",
    "space": "spaces",
    "organization": "organizations",
    "user": "users",
    "role": "roles",
    "route": "routes",
    "domain": "domains",
}


def job(item: Job, urls: Urls) -> Json:
    links: Json = {"self": urls.link(f"/v3/jobs/{item.guid}")}
    collection = _TARGET_PATHS.get(item.target_type)
    if collection and item.state.value != "COMPLETE":
        links[item.target_type] = urls.link(f"/v3/{collection}/{item.target_guid}")
    return {
        **_stamps(item),
        "operation": item.operation,
        "state": cf_job_state(item.state),
        "errors": [job_error_json(error) for error in item.errors],
        "warnings": [{"detail": warning} for warning in item.warnings],
        "links": links,
    }


def job_detail(item: Job, urls: Urls) -> Json:
    """/v3/x/jobs: the CF job plus what an operator needs: stages, queue, lease, attempts."""
    optional = {
        "started_at": item.started_at,
        "finished_at": item.finished_at,
        "lease_expires_at": item.lease_expires_at,
        "run_after": item.run_after,
    }
    return {
        **job(item, urls),
        "links": {
            "self": urls.link(f"/v3/x/jobs/{item.guid}"),
            "job": urls.link(f"/v3/jobs/{item.guid}"),
        },
        "engine_state": item.state.value,
        "queue": item.queue,
        "target": {"type": item.target_type, "guid": item.target_guid},
        "attempts": item.attempts,
        "max_attempts": item.max_attempts,
        "context_id": item.context_id,
        "creator": {"guid": item.creator_guid, "name": item.creator_name},
        "lease_owner": item.lease_owner,
        "result": item.result,
        "stages": [
            {
                "name": stage.name,
                "state": stage.state.value,
                "progress": stage.progress,
                "detail": stage.detail,
                "started_at": timestamp(stage.started_at) if stage.started_at else None,
                "finished_at": timestamp(stage.finished_at) if stage.finished_at else None,
            }
            for stage in item.stages
        ],
        **{key: timestamp(value) if value else None for key, value in optional.items()},
    }


def queue(item: QueueStats, urls: Urls) -> Json:
    return {
        "name": item.name,
        "concurrency": item.concurrency,
        "queued": item.queued,
        "running": item.running,
        "waiting": item.waiting,
        "oldest_queued_at": timestamp(item.oldest_queued_at) if item.oldest_queued_at else None,
        "completed_last_hour": item.completed_last_hour,
        "links": {"self": urls.link(f"/v3/x/queues/{item.name}")},
    }


def paginated(
    page: Page[T],
    query: ListQuery,
    urls: Urls,
    path: str,
    present: Callable[[T], Json],
    params: Sequence[tuple[str, str]],
    included: Mapping[str, list[Json]] | None = None,
) -> Json:
    total_pages = max(1, -(-page.total // query.per_page))
    kept = [(key, value) for key, value in params if key not in ("page", "per_page")]

    def page_link(number: int) -> Json:
        return {"href": urls.href(path, [*kept, ("page", number), ("per_page", query.per_page)])}

    body: Json = {
        "pagination": {
            "total_results": page.total,
            "total_pages": total_pages,
            "first": page_link(1),
            "last": page_link(total_pages),
            "next": page_link(query.page + 1) if query.page < total_pages else None,
            "previous": page_link(query.page - 1) if 1 < query.page <= total_pages + 1 else None,
        },
        "resources": [present(item) for item in page.items],
    }
    if included is not None:
        body["included"] = dict(included)
    return body


def guids_of(items: Iterable[Any], attribute: str) -> list[str]:
    return sorted({getattr(item, attribute) for item in items if getattr(item, attribute)})


def oauth_client(item: OAuthClient, urls: Urls) -> Json:
    return {
        "client_id": item.client_id,
        "created_at": timestamp(item.created_at),
        "authorized_grant_types": list(item.authorized_grant_types),
        "authorities": list(item.authorities),
        "links": {"self": urls.link(f"/v3/x/clients/{item.client_id}")},
    }

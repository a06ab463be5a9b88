"""OvercastClient: typed methods over the CF v3 API (and Overcast's /v3/x extensions).

Lists return every matching resource (pages are followed); lookups by name return None when
nothing matches; deletes return the guid of the job doing the work, which `wait_for_job`
follows to the end."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, BinaryIO, Self, cast
from urllib.parse import quote

import httpx

from overcast.client.errors import ApiError, JobFailed, JobTimedOut, UnexpectedResponse
from overcast.client.resources import (
    App,
    AppEnv,
    AuditEvent,
    Build,
    Buildpack,
    Cell,
    CurrentDropletRelationship,
    Domain,
    Droplet,
    EnvValue,
    InstanceStats,
    Job,
    JobDetail,
    LogEntry,
    MatchedResource,
    OAuthClient,
    Organization,
    Package,
    Process,
    Queue,
    Role,
    Route,
    RouteDestinations,
    Space,
    User,
)
from overcast.client.session import (
    DEFAULT_TIMEOUT,
    ApiSession,
    Params,
    TokenListener,
    Tokens,
    sse_data,
)

JOB_DONE_STATES = frozenset({"COMPLETE", "FAILED"})
BUILD_DONE_STATES = frozenset({"STAGED", "FAILED"})
FIRST_POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 2.0
DEFAULT_JOB_TIMEOUT = 60.0
# Staging installs dependencies (pip, npm): it takes minutes, not seconds.
DEFAULT_BUILD_TIMEOUT = 900.0
MAX_PER_PAGE = 5000


def _to_one(guid: str) -> dict[str, dict[str, str]]:
    return {"data": {"guid": guid}}


def _filters(**values: list[str] | None) -> dict[str, str | int | list[str]]:
    return {name: value for name, value in values.items() if value}


class OvercastClient:
    """A synchronous client for one API endpoint. Use as a context manager or call close().

    `tokens` resumes a saved session; `token_listener` is called with every new pair of
    tokens (login and refresh), so a caller can persist them."""

    def __init__(
        self,
        api_url: str,
        *,
        tokens: Tokens | None = None,
        token_listener: TokenListener | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = ApiSession(
            api_url,
            tokens=tokens,
            token_listener=token_listener,
            timeout=timeout,
            transport=transport,
        )
        self._sleep = sleep
        self._clock = clock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    @property
    def api_url(self) -> str:
        return self.session.api_url

    @property
    def tokens(self) -> Tokens | None:
        return self.session.tokens

    # -- auth ----------------------------------------------------------------------------

    def root(self) -> dict[str, Any]:
        return self.session.root()

    def login_password(self, username: str, password: str) -> Tokens:
        return self.session.login_password(username, password)

    def login_client(self, client_id: str, client_secret: str) -> Tokens:
        return self.session.login_client(client_id, client_secret)

    def refresh(self) -> Tokens:
        return self.session.refresh()

    # -- small helpers -------------------------------------------------------------------

    def _get(self, path: str, params: Params | None = None) -> Any:
        return self.session.request_json("GET", path, params=params)

    def _post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self.session.request_json("POST", path, json=body if body is not None else {})

    def _patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.session.request_json("PATCH", path, json=body)

    def _delete_now(self, path: str) -> None:
        """A DELETE the server does at once (204), not through a job."""
        method = "DELETE"
        self.session.request(method, path)

    def _list(
        self, path: str, params: Params | None = None, *, limit: int | None = None
    ) -> list[Any]:
        query: dict[str, str | int | list[str]] = dict(params or {})
        if limit is not None:
            query.setdefault("per_page", min(max(limit, 1), MAX_PER_PAGE))
        return list(self.session.paginate(path, query, limit=limit))

    def list_all(
        self, path: str, params: Params | None = None, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Any CF list endpoint, every page followed (for endpoints without a method here)."""
        return self._list(path, params, limit=limit)

    # -- organizations -------------------------------------------------------------------

    def list_orgs(self, *, names: list[str] | None = None) -> list[Organization]:
        return cast(list[Organization], self._list("/v3/organizations", _filters(names=names)))

    def org_by_name(self, name: str) -> Organization | None:
        found = self.list_orgs(names=[name])
        return found[0] if found else None

    def get_org(self, guid: str) -> Organization:
        return cast(Organization, self._get(f"/v3/organizations/{guid}"))

    def create_org(self, name: str) -> Organization:
        return cast(Organization, self._post("/v3/organizations", {"name": name}))

    def update_org(
        self, guid: str, *, name: str | None = None, suspended: bool | None = None
    ) -> Organization:
        changes = {
            key: value
            for key, value in (("name", name), ("suspended", suspended))
            if value is not None
        }
        return cast(Organization, self._patch(f"/v3/organizations/{guid}", changes))

    def delete_org(self, guid: str) -> str:
        return self.session.accepted_job_guid("DELETE", f"/v3/organizations/{guid}")

    # -- spaces --------------------------------------------------------------------------

    def list_spaces(
        self, *, org_guid: str | None = None, names: list[str] | None = None
    ) -> list[Space]:
        params = _filters(names=names, organization_guids=[org_guid] if org_guid else None)
        return cast(list[Space], self._list("/v3/spaces", params))

    def space_by_name(self, org_guid: str, name: str) -> Space | None:
        found = self.list_spaces(org_guid=org_guid, names=[name])
        return found[0] if found else None

    def get_space(self, guid: str) -> Space:
        return cast(Space, self._get(f"/v3/spaces/{guid}"))

    def create_space(self, name: str, org_guid: str) -> Space:
        body = {"name": name, "relationships": {"organization": _to_one(org_guid)}}
        return cast(Space, self._post("/v3/spaces", body))

    def update_space(self, guid: str, *, name: str) -> Space:
        return cast(Space, self._patch(f"/v3/spaces/{guid}", {"name": name}))

    def delete_space(self, guid: str) -> str:
        return self.session.accepted_job_guid("DELETE", f"/v3/spaces/{guid}")

    # -- apps ----------------------------------------------------------------------------

    def list_apps(
        self, *, space_guid: str | None = None, names: list[str] | None = None
    ) -> list[App]:
        params = _filters(names=names, space_guids=[space_guid] if space_guid else None)
        return cast(list[App], self._list("/v3/apps", params))

    def app_by_name(self, space_guid: str, name: str) -> App | None:
        found = self.list_apps(space_guid=space_guid, names=[name])
        return found[0] if found else None

    def get_app(self, guid: str) -> App:
        return cast(App, self._get(f"/v3/apps/{guid}"))

    def create_app(
        self,
        name: str,
        space_guid: str,
        *,
        environment_variables: Mapping[str, EnvValue] | None = None,
    ) -> App:
        body: dict[str, Any] = {"name": name, "relationships": {"space": _to_one(space_guid)}}
        if environment_variables:
            body["environment_variables"] = dict(environment_variables)
        return cast(App, self._post("/v3/apps", body))

    def update_app(self, guid: str, *, name: str) -> App:
        return cast(App, self._patch(f"/v3/apps/{guid}", {"name": name}))

    def delete_app(self, guid: str) -> str:
        return self.session.accepted_job_guid("DELETE", f"/v3/apps/{guid}")

    def start_app(self, guid: str) -> App:
        return cast(App, self._post(f"/v3/apps/{guid}/actions/start"))

    def stop_app(self, guid: str) -> App:
        return cast(App, self._post(f"/v3/apps/{guid}/actions/stop"))

    def restart_app(self, guid: str) -> App:
        return cast(App, self._post(f"/v3/apps/{guid}/actions/restart"))

    # -- the health service (/v3/x/health, admins) ---------------------------------------

    def health_desired(self) -> dict[str, Any]:
        """Every process with the instances it should run now (0 when its app is stopped)."""
        return dict(self._get("/v3/x/health/desired"))

    def health_act(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Ask the controller to start, stop, record crashes; it checks each against desired
        state and answers which it accepted."""
        return dict(self._post("/v3/x/health/actions", request))

    def health_status(self) -> dict[str, Any]:
        return dict(self._get("/v3/x/health"))

    def app_manifest(self, guid: str) -> str:
        """The manifest (YAML) that would make the app as it is."""
        response = self.session.request(method="GET", path=f"/v3/apps/{guid}/manifest")
        return response.text

    def apply_manifest(self, space_guid: str, manifest_yaml: str) -> str:
        """Apply a manifest to the space's apps (created when missing); the job's guid."""
        return self.session.accepted_job_guid(
            "POST",
            f"/v3/spaces/{space_guid}/actions/apply_manifest",
            content=manifest_yaml.encode(),
            headers={"Content-Type": "application/x-yaml"},
        )

    def app_env(self, guid: str) -> AppEnv:
        return cast(AppEnv, self._get(f"/v3/apps/{guid}/env"))

    def environment_variables(self, guid: str) -> dict[str, EnvValue]:
        body = self._get(f"/v3/apps/{guid}/environment_variables")
        return cast(dict[str, EnvValue], body.get("var") or {})

    def update_environment_variables(
        self, guid: str, changes: Mapping[str, EnvValue]
    ) -> dict[str, EnvValue]:
        """Merges `changes` into the app's variables; a None value deletes that variable."""
        body = self._patch(f"/v3/apps/{guid}/environment_variables", {"var": dict(changes)})
        return cast(dict[str, EnvValue], body.get("var") or {})

    # -- processes -----------------------------------------------------------------------

    def app_processes(self, app_guid: str) -> list[Process]:
        return cast(list[Process], self._list(f"/v3/apps/{app_guid}/processes"))

    def list_processes(
        self, *, space_guids: list[str] | None = None, app_guids: list[str] | None = None
    ) -> list[Process]:
        params = _filters(space_guids=space_guids, app_guids=app_guids)
        return cast(list[Process], self._list("/v3/processes", params))

    def scale_process(
        self,
        guid: str,
        *,
        instances: int | None = None,
        memory_in_mb: int | None = None,
        disk_in_mb: int | None = None,
    ) -> Process:
        body = _scale_body(instances, memory_in_mb, disk_in_mb)
        return cast(Process, self._post(f"/v3/processes/{guid}/actions/scale", body))

    def scale_app_process(
        self,
        app_guid: str,
        process_type: str,
        *,
        instances: int | None = None,
        memory_in_mb: int | None = None,
        disk_in_mb: int | None = None,
    ) -> Process:
        body = _scale_body(instances, memory_in_mb, disk_in_mb)
        path = f"/v3/apps/{app_guid}/processes/{process_type}/actions/scale"
        return cast(Process, self._post(path, body))

    # -- instances (actual state) --------------------------------------------------------

    def process_stats(self, process_guid: str) -> list[InstanceStats]:
        """GET /v3/processes/:guid/stats: every instance, `index` order, DOWN ones included."""
        body = self._get(f"/v3/processes/{process_guid}/stats")
        return cast(list[InstanceStats], body.get("resources") or [])

    def app_process_stats(self, app_guid: str, process_type: str = "web") -> list[InstanceStats]:
        body = self._get(f"/v3/apps/{app_guid}/processes/{process_type}/stats")
        return cast(list[InstanceStats], body.get("resources") or [])

    def restart_instance(self, process_guid: str, index: int) -> None:
        """DELETE /v3/processes/:guid/instances/:index: that one instance is replaced."""
        self._delete_now(f"/v3/processes/{process_guid}/instances/{index}")

    def current_droplet(self, app_guid: str) -> Droplet | None:
        """The app's current droplet; None when it has none (or the API serves no droplets)."""
        try:
            return cast(Droplet, self._get(f"/v3/apps/{app_guid}/droplets/current"))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    # -- logs (/v3/x) --------------------------------------------------------------------

    def recent_logs(self, app_guid: str, limit: int = 100) -> list[LogEntry]:
        """The app's most recent log lines (at most `limit`, up to 1000), oldest first."""
        body = self._get(f"/v3/x/apps/{app_guid}/logs", {"limit": limit})
        return cast(list[LogEntry], body.get("resources") or [])

    def stream_logs(self, app_guid: str, recent: int = 0) -> Generator[LogEntry, None, None]:
        """The app's log lines as they come (Server-Sent Events), after the last `recent`
        ones. Runs until the server ends the stream or the iterator is closed."""
        lines = self.session.stream_lines(
            f"/v3/x/apps/{app_guid}/logs/stream", params={"recent": recent}
        )
        for data in sse_data(lines):
            try:
                entry = json.loads(data)
            except ValueError:
                raise UnexpectedResponse("the log stream sent an event that is not JSON") from None
            yield cast(LogEntry, entry)

    # -- cells (/v3/x) -------------------------------------------------------------------

    def list_cells(
        self, *, zones: list[str] | None = None, states: list[str] | None = None
    ) -> list[Cell]:
        """GET /v3/x/cells (operators)."""
        return cast(list[Cell], self._list("/v3/x/cells", _filters(zones=zones, states=states)))

    def get_cell(self, cell_id: str) -> Cell:
        return cast(Cell, self._get(f"/v3/x/cells/{quote(cell_id, safe='')}"))

    def set_cell_state(self, cell_id: str, state: str) -> Cell:
        """`DISABLED`: no new instances are placed on the cell; `ENABLED`: back in service."""
        path = f"/v3/x/cells/{quote(cell_id, safe='')}"
        return cast(Cell, self._patch(path, {"state": state}))

    # -- users and roles -----------------------------------------------------------------

    def create_user(
        self,
        username: str,
        password: str | None = None,
        *,
        admin: bool = False,
        origin: str = "uaa",
    ) -> User:
        """Overcast is its own UAA: POST /v3/users also takes the password (an extension)."""
        body: dict[str, Any] = {"username": username, "origin": origin, "admin": admin}
        if password is not None:
            body["password"] = password
        return cast(User, self._post("/v3/users", body))

    def list_users(self, *, usernames: list[str] | None = None) -> list[User]:
        return cast(list[User], self._list("/v3/users", _filters(usernames=usernames)))

    def user_by_name(self, username: str) -> User | None:
        found = self.list_users(usernames=[username])
        return found[0] if found else None

    def create_role(
        self,
        role_type: str,
        *,
        username: str | None = None,
        user_guid: str | None = None,
        origin: str | None = None,
        org_guid: str | None = None,
        space_guid: str | None = None,
    ) -> Role:
        """An org role (give org_guid) or a space role (give space_guid) for a user named by
        guid or by username (+ origin)."""
        user: dict[str, str] = {}
        if user_guid:
            user["guid"] = user_guid
        if username:
            user["username"] = username
        if origin:
            user["origin"] = origin
        relationships: dict[str, Any] = {"user": {"data": user}}
        if org_guid:
            relationships["organization"] = _to_one(org_guid)
        if space_guid:
            relationships["space"] = _to_one(space_guid)
        body = {"type": role_type, "relationships": relationships}
        return cast(Role, self._post("/v3/roles", body))

    def list_roles(
        self,
        *,
        types: list[str] | None = None,
        org_guids: list[str] | None = None,
        space_guids: list[str] | None = None,
        user_guids: list[str] | None = None,
    ) -> list[Role]:
        params = _filters(
            types=types,
            organization_guids=org_guids,
            space_guids=space_guids,
            user_guids=user_guids,
        )
        return cast(list[Role], self._list("/v3/roles", params))

    def delete_role(self, guid: str) -> str:
        return self.session.accepted_job_guid("DELETE", f"/v3/roles/{guid}")

    # -- domains and audit events --------------------------------------------------------

    def list_domains(
        self, *, names: list[str] | None = None, guids: list[str] | None = None
    ) -> list[Domain]:
        return cast(list[Domain], self._list("/v3/domains", _filters(names=names, guids=guids)))

    def domain_by_name(self, name: str) -> Domain | None:
        found = self.list_domains(names=[name])
        return found[0] if found else None

    def get_domain(self, guid: str) -> Domain:
        return cast(Domain, self._get(f"/v3/domains/{guid}"))

    def create_domain(
        self, name: str, *, org_guid: str | None = None, internal: bool = False
    ) -> Domain:
        """A private domain of the org (its managers), or a shared one without (admins)."""
        body: dict[str, Any] = {"name": name, "internal": internal}
        if org_guid:
            body["relationships"] = {"organization": _to_one(org_guid)}
        return cast(Domain, self._post("/v3/domains", body))

    def delete_domain(self, guid: str) -> str:
        """Deletes the domain and every route under it (a job)."""
        return self.session.accepted_job_guid("DELETE", f"/v3/domains/{guid}")

    # -- routes --------------------------------------------------------------------------

    def list_routes(
        self,
        *,
        space_guids: list[str] | None = None,
        domain_guids: list[str] | None = None,
        hosts: list[str] | None = None,
        paths: list[str] | None = None,
        app_guids: list[str] | None = None,
        org_guids: list[str] | None = None,
    ) -> list[Route]:
        params = _filters(
            space_guids=space_guids,
            domain_guids=domain_guids,
            hosts=hosts,
            paths=paths,
            app_guids=app_guids,
            organization_guids=org_guids,
        )
        return cast(list[Route], self._list("/v3/routes", params))

    def find_route(self, domain_guid: str, host: str = "", path: str = "") -> Route | None:
        """The route at host.domain/path, if there is one (host and path ignore case, as the
        server compares them). An empty host or path means none, not any."""
        found = self.list_routes(
            domain_guids=[domain_guid],
            hosts=[host] if host else None,
            paths=[path] if path else None,
        )
        for route in found:
            if route["host"].lower() == host.lower() and route["path"].lower() == path.lower():
                return route
        return None

    def get_route(self, guid: str) -> Route:
        return cast(Route, self._get(f"/v3/routes/{guid}"))

    def create_route(
        self,
        space_guid: str,
        domain_guid: str,
        *,
        host: str = "",
        path: str = "",
        load_balancing: str | None = None,
    ) -> Route:
        body: dict[str, Any] = {
            "relationships": {"space": _to_one(space_guid), "domain": _to_one(domain_guid)}
        }
        if host:
            body["host"] = host
        if path:
            body["path"] = path
        if load_balancing:
            body["options"] = {"loadbalancing": load_balancing}
        return cast(Route, self._post("/v3/routes", body))

    def update_route(self, guid: str, *, load_balancing: str | None) -> Route:
        """Set the route's load balancing (None: back to the default, round-robin)."""
        body = {"options": {"loadbalancing": load_balancing}}
        return cast(Route, self._patch(f"/v3/routes/{guid}", body))

    def delete_route(self, guid: str) -> str:
        return self.session.accepted_job_guid("DELETE", f"/v3/routes/{guid}")

    def app_routes(self, app_guid: str) -> list[Route]:
        return cast(list[Route], self._list(f"/v3/apps/{app_guid}/routes"))

    def route_destinations(self, guid: str) -> RouteDestinations:
        return cast(RouteDestinations, self._get(f"/v3/routes/{guid}/destinations"))

    def add_route_destinations(
        self, guid: str, app_guids: Sequence[str], *, process_type: str = "web"
    ) -> RouteDestinations:
        """Map the apps' `process_type` processes to the route (already mapped: unchanged)."""
        body = {"destinations": _destinations(app_guids, process_type)}
        return cast(RouteDestinations, self._post(f"/v3/routes/{guid}/destinations", body))

    def replace_route_destinations(
        self, guid: str, app_guids: Sequence[str], *, process_type: str = "web"
    ) -> RouteDestinations:
        """Make these apps the route's only destinations (none: unmap every app)."""
        body = {"destinations": _destinations(app_guids, process_type)}
        return cast(RouteDestinations, self._patch(f"/v3/routes/{guid}/destinations", body))

    def remove_route_destination(self, guid: str, destination_guid: str) -> None:
        self._delete_now(f"/v3/routes/{guid}/destinations/{destination_guid}")

    def list_audit_events(
        self,
        *,
        types: list[str] | None = None,
        target_guids: list[str] | None = None,
        space_guids: list[str] | None = None,
        org_guids: list[str] | None = None,
        newest_first: bool = True,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        params = _filters(
            types=types,
            target_guids=target_guids,
            space_guids=space_guids,
            organization_guids=org_guids,
        )
        params["order_by"] = "-created_at" if newest_first else "created_at"
        return cast(list[AuditEvent], self._list("/v3/audit_events", params, limit=limit))

    # -- jobs ----------------------------------------------------------------------------

    def get_job(self, guid: str) -> Job:
        return cast(Job, self._get(f"/v3/jobs/{guid}"))

    def wait_for_job(
        self,
        guid: str,
        *,
        timeout: float = DEFAULT_JOB_TIMEOUT,
        max_interval: float = MAX_POLL_SECONDS,
    ) -> Job:
        """Polls the job with backoff (at most `max_interval` apart) until it is COMPLETE
        (returned) or FAILED (JobFailed); JobTimedOut when `timeout` seconds pass first."""
        deadline = self._clock() + timeout
        delay = min(FIRST_POLL_SECONDS, max_interval)
        while True:
            job = self.get_job(guid)
            if job["state"] == "COMPLETE":
                return job
            if job["state"] == "FAILED":
                raise JobFailed(guid, job.get("operation", ""), job.get("errors") or [])
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise JobTimedOut(guid, job["state"], timeout)
            self._sleep(min(delay, remaining))
            delay = min(delay * 2, max_interval)

    def list_job_details(
        self,
        *,
        states: list[str] | None = None,
        operations: list[str] | None = None,
        newest_first: bool = True,
        limit: int | None = None,
    ) -> list[JobDetail]:
        """GET /v3/x/jobs (operators): jobs with their stages, queue and attempts."""
        params = _filters(states=states, operations=operations)
        params["order_by"] = "-created_at" if newest_first else "created_at"
        return cast(list[JobDetail], self._list("/v3/x/jobs", params, limit=limit))

    def get_job_detail(self, guid: str) -> JobDetail:
        return cast(JobDetail, self._get(f"/v3/x/jobs/{guid}"))

    def list_queues(self) -> list[Queue]:
        """GET /v3/x/queues (operators). Not paginated: there are few queues."""
        body = self._get("/v3/x/queues")
        return cast(list[Queue], body.get("resources") or [])

    # -- OAuth clients (/v3/x) ---------------------------------------------------------

    def list_oauth_clients(self) -> list[OAuthClient]:
        """GET /v3/x/clients (admins). Not paginated: there are few clients."""
        body = self._get("/v3/x/clients")
        return cast(list[OAuthClient], body.get("resources") or [])

    def create_oauth_client(
        self, client_id: str, secret: str, authorities: Sequence[str]
    ) -> OAuthClient:
        """A client that logs in with `login_client(client_id, secret)` and gets these
        scopes (admins). The secret is not in the answer: the server keeps only its hash."""
        body = {"client_id": client_id, "client_secret": secret, "authorities": list(authorities)}
        return cast(OAuthClient, self._post("/v3/x/clients", body))

    def delete_oauth_client(self, client_id: str) -> None:
        """Deleted at once (204); the tokens it holds stop working with it."""
        self._delete_now(f"/v3/x/clients/{quote(client_id, safe='')}")

    # -- droplets ------------------------------------------------------------------------

    def create_droplet(
        self, app_guid: str, *, process_types: Mapping[str, str] | None = None
    ) -> Droplet:
        """An empty droplet (AWAITING_UPLOAD) of the app; its bits come with upload_droplet."""
        body: dict[str, Any] = {"relationships": {"app": _to_one(app_guid)}}
        if process_types is not None:
            body["process_types"] = dict(process_types)
        return cast(Droplet, self._post("/v3/droplets", body))

    def upload_droplet(self, guid: str, path: str | os.PathLike[str]) -> str:
        """Upload a droplet tarball (streamed from the file); returns the guid of the job that
        checks and stores it (wait_for_job; the droplet is then STAGED or FAILED)."""
        with open(path, "rb") as bits:
            response = self.session.request(
                method="POST",
                path=f"/v3/droplets/{guid}/upload",
                files={"bits": (os.path.basename(path), bits, "application/gzip")},
            )
        location = str(response.headers.get("location", ""))
        job_guid = location.rstrip("/").rsplit("/", 1)[-1]
        if response.status_code != 202 or not job_guid:
            raise UnexpectedResponse("the droplet upload was not answered with a job")
        return job_guid

    def get_droplet(self, guid: str) -> Droplet:
        return cast(Droplet, self._get(f"/v3/droplets/{guid}"))

    def app_droplets(self, app_guid: str, *, states: list[str] | None = None) -> list[Droplet]:
        return cast(
            list[Droplet], self._list(f"/v3/apps/{app_guid}/droplets", _filters(states=states))
        )

    def set_current_droplet(self, app_guid: str, droplet_guid: str) -> CurrentDropletRelationship:
        """Make a STAGED droplet the app's current one (it runs from the next start)."""
        return cast(
            CurrentDropletRelationship,
            self._patch(
                f"/v3/apps/{app_guid}/relationships/current_droplet",
                {"data": {"guid": droplet_guid}},
            ),
        )

    # -- packages ------------------------------------------------------------------------

    def create_package(self, app_guid: str) -> Package:
        """An empty `bits` package (AWAITING_UPLOAD) of the app; fill it with upload_package."""
        body = {"type": "bits", "relationships": {"app": _to_one(app_guid)}}
        return cast(Package, self._post("/v3/packages", body))

    def resource_matches(self, resources: list[MatchedResource]) -> list[MatchedResource]:
        """The entries whose files (same sha1 and size) the server already holds: they need
        not be uploaded again (name them in upload_package's `resources`)."""
        body = self._post("/v3/resource_matches", {"resources": list(resources)})
        return cast(list[MatchedResource], body.get("resources") or [])

    def upload_package(
        self,
        guid: str,
        path: str | os.PathLike[str] | None = None,
        *,
        resources: list[MatchedResource] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Package:
        """Upload a zip of the app's files (streamed from `path`) and/or the `resources` the
        server holds. Answered at once with the package PROCESSING_UPLOAD; poll get_package
        (or wait_for_package) until it is READY or FAILED. `progress` is called with the
        bytes of the zip sent so far, as they are sent (again from 0 if the call is retried
        after a token refresh)."""
        if path is None and resources is None:
            raise ValueError("give the zip's path, the resources, or both")
        files: dict[str, Any] = {}
        if resources is not None:
            files["resources"] = (None, json.dumps(list(resources)).encode())
        if path is None:
            response = self.session.request(
                method="POST", path=f"/v3/packages/{guid}/upload", files=files
            )
            return cast(Package, response.json())
        with open(path, "rb") as bits:
            body: BinaryIO | _ProgressReader = (
                bits if progress is None else _ProgressReader(bits, progress)
            )
            files["bits"] = (os.path.basename(path), body, "application/zip")
            response = self.session.request(
                method="POST", path=f"/v3/packages/{guid}/upload", files=files
            )
        return cast(Package, response.json())

    def get_package(self, guid: str) -> Package:
        return cast(Package, self._get(f"/v3/packages/{guid}"))

    def wait_for_package(
        self,
        guid: str,
        *,
        timeout: float = DEFAULT_JOB_TIMEOUT,
        max_interval: float = MAX_POLL_SECONDS,
    ) -> Package:
        """Poll the package until its upload is processed (READY or FAILED)."""
        deadline = self._clock() + timeout
        delay = min(FIRST_POLL_SECONDS, max_interval)
        while True:
            package = self.get_package(guid)
            if package["state"] not in ("AWAITING_UPLOAD", "PROCESSING_UPLOAD"):
                return package
            if self._clock() > deadline:
                raise JobTimedOut(guid, package["state"], timeout)
            self._sleep(delay)
            delay = min(delay * 2, max_interval)

    def app_packages(self, app_guid: str, *, states: list[str] | None = None) -> list[Package]:
        return cast(
            list[Package], self._list(f"/v3/apps/{app_guid}/packages", _filters(states=states))
        )

    def delete_package(self, guid: str) -> str:
        return self.session.accepted_job_guid("DELETE", f"/v3/packages/{guid}")

    # -- builds and buildpacks -----------------------------------------------------------

    def create_build(
        self,
        package_guid: str,
        *,
        buildpacks: Sequence[str] | None = None,
        stack: str | None = None,
        staging_memory_in_mb: int | None = None,
        staging_disk_in_mb: int | None = None,
    ) -> Build:
        """Stage a READY package: the build starts STAGING; poll get_build (or wait_for_build)
        until it is STAGED (its `droplet` set) or FAILED (its `error` set). Without
        `buildpacks` (or `stack`), the app's lifecycle decides (none: detection)."""
        body: dict[str, Any] = {"package": {"guid": package_guid}}
        if buildpacks is not None or stack is not None:
            data: dict[str, Any] = {}
            if buildpacks is not None:
                data["buildpacks"] = list(buildpacks)
            if stack is not None:
                data["stack"] = stack
            body["lifecycle"] = {"type": "buildpack", "data": data}
        if staging_memory_in_mb is not None:
            body["staging_memory_in_mb"] = staging_memory_in_mb
        if staging_disk_in_mb is not None:
            body["staging_disk_in_mb"] = staging_disk_in_mb
        return cast(Build, self._post("/v3/builds", body))

    def get_build(self, guid: str) -> Build:
        return cast(Build, self._get(f"/v3/builds/{guid}"))

    def app_builds(self, app_guid: str, states: list[str] | None = None) -> list[Build]:
        return cast(list[Build], self._list(f"/v3/apps/{app_guid}/builds", _filters(states=states)))

    def wait_for_build(
        self,
        guid: str,
        *,
        timeout: float = DEFAULT_BUILD_TIMEOUT,
        on_poll: Callable[[Build], None] | None = None,
        max_interval: float = MAX_POLL_SECONDS,
    ) -> Build:
        """Poll the build with backoff (at most `max_interval` apart) until it is STAGED or
        FAILED, and return it (a FAILED build is returned, not raised: its `error` says why);
        JobTimedOut when `timeout` seconds pass first. `on_poll` sees every build polled,
        the last one included (to follow the staging logs meanwhile, say)."""
        deadline = self._clock() + timeout
        delay = min(FIRST_POLL_SECONDS, max_interval)
        while True:
            build = self.get_build(guid)
            if on_poll is not None:
                on_poll(build)
            if build["state"] in BUILD_DONE_STATES:
                return build
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise JobTimedOut(guid, build["state"], timeout)
            self._sleep(min(delay, remaining))
            delay = min(delay * 2, max_interval)

    def list_buildpacks(self, names: list[str] | None = None) -> list[Buildpack]:
        """The admin buildpacks (detection tries them in `position` order)."""
        return cast(list[Buildpack], self._list("/v3/buildpacks", _filters(names=names)))


class _ProgressReader:
    """A binary file that reports its position after every read or seek: how much of it
    httpx has streamed into the request so far."""

    def __init__(self, file: BinaryIO, progress: Callable[[int], None]) -> None:
        self._file = file
        self._progress = progress

    def fileno(self) -> int:
        return self._file.fileno()

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._file.seek(offset, whence)
        self._progress(position)
        return position

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._progress(self._file.tell())
        return chunk


def _destinations(app_guids: Sequence[str], process_type: str) -> list[dict[str, Any]]:
    return [{"app": {"guid": guid, "process": {"type": process_type}}} for guid in app_guids]


def _scale_body(
    instances: int | None, memory_in_mb: int | None, disk_in_mb: int | None
) -> dict[str, int]:
    given = (("instances", instances), ("memory_in_mb", memory_in_mb), ("disk_in_mb", disk_in_mb))
    return {key: value for key, value in given if value is not None}

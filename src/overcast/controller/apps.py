"""Apps: desired state, environment, start/stop/restart."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from overcast.controller.access import (
    Caller,
    forbid,
    restrict,
    visible_app,
    visible_space,
    visible_space_guids,
)
from overcast.controller.base import MetadataPatch, UseCase
from overcast.controller.events import changes_request, record_app_event
from overcast.controller.logs import SOURCE_API, LogBuffer, change_summary
from overcast.controller.scheduling import request_schedule
from overcast.core.ids import new_guid
from overcast.models.environment import user_environment, vcap_application
from overcast.models.errors import Unprocessable
from overcast.models.jobs import Job
from overcast.models.lifecycle import APP_TRANSITIONS, AppState, transition
from overcast.models.metadata import patch_metadata
from overcast.models.query import ListQuery, Page
from overcast.models.resources import (
    App,
    HealthCheck,
    HealthCheckType,
    Metadata,
    Process,
    Space,
)
from overcast.models.validation import (
    check_environment_variables,
    check_name,
    env_value_text,
)
from overcast.store.base import Tx

DEFAULT_STACK = "overcast-linux"
STACKS = frozenset({DEFAULT_STACK})


@dataclass(frozen=True)
class Lifecycle:
    type: str = "buildpack"
    buildpacks: tuple[str, ...] | None = None
    stack: str | None = None


@dataclass(frozen=True)
class AppChanges:
    name: str | None = None
    lifecycle: Lifecycle | None = None
    labels: MetadataPatch = None
    annotations: MetadataPatch = None


def check_lifecycle(lifecycle: Lifecycle) -> None:
    if lifecycle.type != "buildpack":
        raise Unprocessable(f"Lifecycle type {lifecycle.type!r} is not supported (buildpack)")
    if lifecycle.stack is not None and lifecycle.stack not in STACKS:
        raise Unprocessable(f"Stack {lifecycle.stack!r} does not exist")
    for name in lifecycle.buildpacks or ():
        if not name or len(name) > 4096:
            raise Unprocessable("Buildpack names must be 1 to 4096 characters")


def _state_line(guid: str, state: str) -> str:
    return f"Updated app with guid {guid} ({change_summary({'state': state})})"


def _app_changes(changes: AppChanges) -> str:
    """What an update changed, for the `API` line: names and lifecycle, and only the keys of
    metadata."""
    summary: dict[str, object] = {}
    if changes.name is not None:
        summary["name"] = changes.name
    if changes.lifecycle is not None:
        summary["lifecycle"] = dataclasses.asdict(changes.lifecycle)
    metadata = {
        name: sorted(given)
        for name, given in (("labels", changes.labels), ("annotations", changes.annotations))
        if given
    }
    if metadata:
        summary["metadata"] = metadata
    return change_summary(summary)


def new_process(app_guid: str, process_type: str, now: Any) -> Process:
    # As CF: only `web` listens on a port; other types are checked by their process alone.
    check = HealthCheck() if process_type == "web" else HealthCheck(type=HealthCheckType.PROCESS)
    return Process(
        guid=new_guid(),
        app_guid=app_guid,
        type=process_type,
        created_at=now,
        updated_at=now,
        version=new_guid(),
        health_check=check,
    )


class Apps(UseCase):
    # The API's external URL for VCAP_APPLICATION.cf_api; set once the API is listening.
    api_url: str = ""
    # Where the `API` lines about changes go (set by the Controller).
    logs: LogBuffer | None = None
    # The uris of processes' routes, for VCAP_APPLICATION (set by the Controller).
    uris_of_processes: Callable[[Sequence[str]], Awaitable[dict[str, list[str]]]] | None = None

    async def _log_change(self, guid: str, text: str) -> None:
        if self.logs is not None:
            await self.logs.publish(guid, SOURCE_API, text)

    async def create(
        self,
        caller: Caller,
        name: str,
        space_guid: str,
        *,
        environment_variables: Mapping[str, object] | None = None,
        lifecycle: Lifecycle | None = None,
        labels: MetadataPatch = None,
        annotations: MetadataPatch = None,
    ) -> App:
        check_name(name, what="App")
        env = dict(environment_variables or {})
        check_environment_variables(env)
        lifecycle = lifecycle or Lifecycle()
        check_lifecycle(lifecycle)
        now = self.clock.now()
        async with self.store.write() as tx:
            space = await visible_space(tx, caller, space_guid)
            if not caller.permissions.can_develop_in_space(space.guid):
                raise forbid()
            app = App(
                guid=new_guid(),
                name=name,
                space_guid=space.guid,
                created_at=now,
                updated_at=now,
                buildpacks=tuple(lifecycle.buildpacks or ()),
                stack=lifecycle.stack or DEFAULT_STACK,
                environment_variables={k: env_value_text(v) for k, v in env.items()},
                metadata=patch_metadata(Metadata(), labels, annotations),
            )
            await tx.apps.add(app)
            await tx.processes.add(new_process(app.guid, "web", now))
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.create",
                app,
                space,
                request={
                    "name": name,
                    "environment_variables": env,
                    "lifecycle": dataclasses.asdict(lifecycle),
                },
            )
        return app

    async def get(self, caller: Caller, guid: str) -> App:
        async with self.store.read() as tx:
            app, _ = await visible_app(tx, caller, guid)
            return app

    async def page(self, caller: Caller, query: ListQuery) -> Page[App]:
        async with self.store.read() as tx:
            allowed = await visible_space_guids(tx, caller)
            filters = restrict(query.filters, "space_guids", allowed)
            return await tx.apps.page(dataclasses.replace(query, filters=filters))

    async def _writable(self, tx: Tx, caller: Caller, guid: str) -> tuple[App, Space]:
        app, space = await visible_app(tx, caller, guid)
        if not caller.permissions.can_develop_in_space(space.guid):
            raise forbid()
        return app, space

    async def update(self, caller: Caller, guid: str, changes: AppChanges) -> App:
        if changes.name is not None:
            check_name(changes.name, what="App")
        if changes.lifecycle is not None:
            check_lifecycle(changes.lifecycle)
        async with self.store.write() as tx:
            _, space = await self._writable(tx, caller, guid)

            def apply(current: App) -> App:
                lifecycle = changes.lifecycle
                return dataclasses.replace(
                    current,
                    name=current.name if changes.name is None else changes.name,
                    buildpacks=(
                        current.buildpacks
                        if lifecycle is None or lifecycle.buildpacks is None
                        else tuple(lifecycle.buildpacks)
                    ),
                    stack=(
                        current.stack
                        if lifecycle is None or lifecycle.stack is None
                        else lifecycle.stack
                    ),
                    metadata=patch_metadata(current.metadata, changes.labels, changes.annotations),
                )

            _, after = await tx.apps.update(guid, apply)
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.update",
                after,
                space,
                request=changes_request(changes),
            )
        await self._log_change(guid, f"Updated app with guid {guid} ({_app_changes(changes)})")
        return after

    async def delete(self, caller: Caller, guid: str) -> Job:
        async with self.store.write() as tx:
            app, space = await self._writable(tx, caller, guid)
            job = await self.engine.submit_in(
                tx,
                "app.delete",
                target_type="app",
                target_guid=app.guid,
                creator=self.creator(caller),
            )
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.delete-request",
                app,
                space,
            )
        self.engine.wake()
        return job

    # --- desired state ----------------------------------------------------------------------

    async def _set_state(
        self,
        caller: Caller,
        guid: str,
        state: AppState,
        event: str,
        *,
        replace_instances: bool = False,
    ) -> App:
        async with self.store.write() as tx:
            app, space = await self._writable(tx, caller, guid)
            if state == AppState.STARTED and not app.current_droplet_guid:
                raise Unprocessable("Assign a droplet before starting this app.")
            _, after = await tx.apps.update(
                guid,
                lambda current: dataclasses.replace(
                    current, state=transition(APP_TRANSITIONS, current.state, state, what="App")
                ),
            )
            for process in await tx.processes.of_app(guid):
                if replace_instances:
                    _, process = await tx.processes.update(
                        process.guid, lambda p: dataclasses.replace(p, version=new_guid())
                    )
                await request_schedule(tx, self.engine, after, process)
            await record_app_event(
                tx,
                self.clock,
                caller,
                event,
                after,
                space,
            )
        self.engine.wake()
        return after

    async def start(self, caller: Caller, guid: str) -> App:
        app = await self._set_state(caller, guid, AppState.STARTED, "audit.app.start")
        await self._log_change(guid, _state_line(guid, "STARTED"))
        return app

    async def stop(self, caller: Caller, guid: str) -> App:
        app = await self._set_state(caller, guid, AppState.STOPPED, "audit.app.stop")
        await self._log_change(guid, _state_line(guid, "STOPPED"))
        return app

    async def restart(self, caller: Caller, guid: str) -> App:
        """Stop then start: every instance is replaced (new process versions)."""
        app = await self._set_state(
            caller, guid, AppState.STARTED, "audit.app.restart", replace_instances=True
        )
        await self._log_change(guid, f"Restarted app with guid {guid}")
        return app

    # --- environment ------------------------------------------------------------------------

    async def environment_variables(self, caller: Caller, guid: str) -> tuple[App, dict[str, str]]:
        async with self.store.read() as tx:
            app, space = await visible_app(tx, caller, guid)
        if not caller.permissions.can_see_space_secrets(space.guid):
            raise forbid()
        return app, user_environment(app)

    async def patch_environment_variables(
        self, caller: Caller, guid: str, variables: Mapping[str, object]
    ) -> tuple[App, dict[str, str]]:
        check_environment_variables(variables)
        async with self.store.write() as tx:
            _, space = await self._writable(tx, caller, guid)

            def apply(current: App) -> App:
                env = dict(current.environment_variables)
                for name, value in variables.items():
                    if value is None:
                        env.pop(name, None)
                    else:
                        env[name] = env_value_text(value)
                return dataclasses.replace(current, environment_variables=env)

            _, after = await tx.apps.update(guid, apply)
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.update",
                after,
                space,
                request={"environment_variables": dict(variables)},
            )
        # Values never go into logs: CF writes the same placeholder.
        hidden = change_summary({"environment_variables": "[PRIVATE DATA HIDDEN]"})
        await self._log_change(guid, f"Updated app with guid {guid} ({hidden})")
        return after, user_environment(after)

    async def env(self, caller: Caller, guid: str) -> dict[str, Any]:
        """GET /v3/apps/:guid/env: what the app's instances see, in CF's grouping."""
        async with self.store.read() as tx:
            app, space = await visible_app(tx, caller, guid)
            if not caller.permissions.can_see_space_secrets(space.guid):
                raise forbid()
            org = await tx.orgs.require(space.org_guid)
            web = await tx.processes.by_type(app.guid, "web")
        uris: list[str] = []
        if web is not None and self.uris_of_processes is not None:
            uris = (await self.uris_of_processes([web.guid])).get(web.guid, [])
        return {
            "staging_env_json": {},
            "running_env_json": {},
            "environment_variables": user_environment(app),
            "system_env_json": {"VCAP_SERVICES": {}},
            "application_env_json": {
                "VCAP_APPLICATION": vcap_application(
                    app, space, org, api_url=self.api_url, uris=uris, process=web
                )
            },
        }

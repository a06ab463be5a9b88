"""Deletes as jobs (CF answers 202 + a job for them). Every stage is idempotent: run twice
(after a worker died mid-stage) it finds less to do, never fails for what is already gone."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from overcast.jobs.engine import JobContext, Operation, StageSpec
from overcast.models.lifecycle import AppState
from overcast.store.base import Store, Tx


async def _delete_app(tx: Tx, app_guid: str) -> None:
    # Processes and route destinations go with the app (ON DELETE CASCADE).
    await tx.apps.delete(app_guid)


StopAppInstances = Callable[[str], Awaitable[int]]


async def _no_instances(_app_guid: str) -> int:
    return 0


class Deletions:
    def __init__(self, store: Store, stop_app_instances: StopAppInstances = _no_instances) -> None:
        self.store = store
        # Asks the cells to stop an app's instances: a deleted app must not keep running.
        self.stop_app_instances = stop_app_instances

    async def _delete_space_contents(self, space_guid: str) -> None:
        async with self.store.read() as tx:
            app_guids = await tx.apps.guids({"space_guids": [space_guid]})
        for app_guid in app_guids:
            await self.stop_app_instances(app_guid)
        async with self.store.write() as tx:
            for app_guid in app_guids:
                await _delete_app(tx, app_guid)

    # --- apps -------------------------------------------------------------------------------

    async def stop_app(self, context: JobContext) -> None:
        async with self.store.write() as tx:
            if await tx.apps.get(context.job.target_guid) is not None:
                await tx.apps.update(
                    context.job.target_guid,
                    lambda app: dataclasses.replace(app, state=AppState.STOPPED),
                )

    async def stop_instances(self, context: JobContext) -> None:
        await self.stop_app_instances(context.job.target_guid)

    async def delete_app(self, context: JobContext) -> None:
        async with self.store.write() as tx:
            await _delete_app(tx, context.job.target_guid)

    # --- spaces -----------------------------------------------------------------------------

    async def delete_apps_of_space(self, context: JobContext) -> None:
        await self._delete_space_contents(context.job.target_guid)

    async def delete_space(self, context: JobContext) -> None:
        # The space's routes go with it (ON DELETE CASCADE), and their destinations with them;
        # an app's destinations went with the app.
        async with self.store.write() as tx:
            await tx.spaces.delete(context.job.target_guid)

    # --- organizations ----------------------------------------------------------------------

    async def delete_spaces_of_org(self, context: JobContext) -> None:
        async with self.store.read() as tx:
            space_guids = await tx.spaces.guids({"organization_guids": [context.job.target_guid]})
        for done, space_guid in enumerate(space_guids, start=1):
            await self._delete_space_contents(space_guid)
            async with self.store.write() as tx:
                await tx.spaces.delete(space_guid)
            await context.progress(done * 100 // len(space_guids), f"{done} spaces deleted")

    async def delete_org(self, context: JobContext) -> None:
        # Org roles and private domains go with the org (ON DELETE CASCADE), and the routes
        # under those domains with them.
        async with self.store.write() as tx:
            await tx.orgs.delete(context.job.target_guid)

    # --- roles and users --------------------------------------------------------------------

    async def delete_role(self, context: JobContext) -> None:
        async with self.store.write() as tx:
            await tx.roles.delete(context.job.target_guid)

    async def delete_user(self, context: JobContext) -> None:
        async with self.store.write() as tx:
            await tx.users.delete(context.job.target_guid)

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "app.delete",
                "deletes",
                (
                    StageSpec("stop app", self.stop_app),
                    StageSpec("stop instances", self.stop_instances),
                    StageSpec("delete app", self.delete_app),
                ),
            ),
            Operation(
                "space.delete",
                "deletes",
                (
                    StageSpec("delete apps", self.delete_apps_of_space),
                    StageSpec("delete space", self.delete_space),
                ),
            ),
            Operation(
                "organization.delete",
                "deletes",
                (
                    StageSpec("delete spaces", self.delete_spaces_of_org),
                    StageSpec("delete organization", self.delete_org),
                ),
            ),
            Operation("role.delete", "default", (StageSpec("delete role", self.delete_role),)),
            Operation("user.delete", "default", (StageSpec("delete user", self.delete_user),)),
        ]

"""Deletes as jobs (CF answers 202 + a job for them). Every stage is idempotent: run twice
(after a worker died mid-stage) it finds less to do, never fails for what is already gone."""

from __future__ import annotations

import dataclasses

from overcast.jobs.engine import JobContext, Operation, StageSpec
from overcast.models.lifecycle import AppState
from overcast.store.base import Store, Tx


async def _delete_app(tx: Tx, app_guid: str) -> None:
    # Processes go with the app (ON DELETE CASCADE).
    await tx.apps.delete(app_guid)


async def _delete_space_contents(store: Store, space_guid: str) -> None:
    async with store.write() as tx:
        for app_guid in await tx.apps.guids({"space_guids": [space_guid]}):
            await _delete_app(tx, app_guid)


class Deletions:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- apps -------------------------------------------------------------------------------

    async def stop_app(self, context: JobContext) -> None:
        async with self.store.write() as tx:
            if await tx.apps.get(context.job.target_guid) is not None:
                await tx.apps.update(
                    context.job.target_guid,
                    lambda app: dataclasses.replace(app, state=AppState.STOPPED),
                )

    async def delete_app(self, context: JobContext) -> None:
        async with self.store.write() as tx:
            await _delete_app(tx, context.job.target_guid)

    # --- spaces -----------------------------------------------------------------------------

    async def delete_apps_of_space(self, context: JobContext) -> None:
        await _delete_space_contents(self.store, context.job.target_guid)

    async def delete_space(self, context: JobContext) -> None:
        async with self.store.write() as tx:
            await tx.spaces.delete(context.job.target_guid)

    # --- organizations ----------------------------------------------------------------------

    async def delete_spaces_of_org(self, context: JobContext) -> None:
        async with self.store.read() as tx:
            space_guids = await tx.spaces.guids({"organization_guids": [context.job.target_guid]})
        for done, space_guid in enumerate(space_guids, start=1):
            await _delete_space_contents(self.store, space_guid)
            async with self.store.write() as tx:
                await tx.spaces.delete(space_guid)
            await context.progress(done * 100 // len(space_guids), f"{done} spaces deleted")

    async def delete_org(self, context: JobContext) -> None:
        # Org roles and private domains go with the org (ON DELETE CASCADE).
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

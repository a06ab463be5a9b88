"""Jobs and queues as users and operators see them."""

from __future__ import annotations

import dataclasses

from overcast.controller.access import Caller, forbid
from overcast.controller.base import UseCase
from overcast.controller.events import record
from overcast.models.errors import NotFound, Unprocessable
from overcast.models.jobs import Job, Queue, QueueStats
from overcast.models.query import ListQuery, Page

MAX_QUEUE_CONCURRENCY = 1000


class Jobs(UseCase):
    async def get(self, caller: Caller, guid: str) -> Job:
        async with self.store.read() as tx:
            job = await tx.jobs.get(guid)
        # A job is its creator's (and operators'); others are not told it exists.
        if job is None or not (caller.admin or job.creator_guid == caller.identity.guid):
            raise NotFound.of("Job")
        return job

    async def page(self, caller: Caller, query: ListQuery) -> Page[Job]:
        if not caller.admin:
            raise forbid()
        async with self.store.read() as tx:
            return await tx.jobs.page(query)

    async def cancel(self, caller: Caller, guid: str) -> Job:
        await self.get(caller, guid)
        return await self.engine.cancel(guid)

    async def queues(self, caller: Caller) -> list[QueueStats]:
        if not caller.admin:
            raise forbid()
        async with self.store.read() as tx:
            return await tx.jobs.queue_stats(self.clock.now())

    async def queue(self, caller: Caller, name: str) -> QueueStats:
        for stats in await self.queues(caller):
            if stats.name == name:
                return stats
        raise NotFound.of("Queue")

    async def set_queue_concurrency(self, caller: Caller, name: str, concurrency: int) -> Queue:
        if not caller.admin:
            raise forbid()
        if not 1 <= concurrency <= MAX_QUEUE_CONCURRENCY:
            raise Unprocessable(f"Concurrency must be between 1 and {MAX_QUEUE_CONCURRENCY}")
        async with self.store.write() as tx:
            before, after = await tx.queues.set_concurrency(name, concurrency)
            await record(
                tx,
                self.clock,
                caller,
                "audit.queue.update",
                target=(name, "queue", name),
                request={"concurrency": concurrency},
                previous=dataclasses.asdict(before)["concurrency"],
            )
        self.engine.wake()
        return after

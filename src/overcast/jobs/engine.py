"""The job engine (DESIGN.md section 6): persisted jobs with ordered, idempotent stages, run by
workers that hold a lease. A worker that dies loses its lease when it expires; another worker
then claims the job and resumes it at its first unfinished stage."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from overcast.core.clock import Clock
from overcast.core.context import context_scope, current_context_id
from overcast.core.ids import new_context_id, new_guid
from overcast.core.logging import get_logger
from overcast.models.errors import NotFound, OvercastError, Unprocessable
from overcast.models.jobs import Job, JobError, Stage
from overcast.models.lifecycle import JobState, StageState
from overcast.store.base import Store, Tx

log = get_logger(__name__)


@dataclass(frozen=True)
class Poll:
    """Returned by a stage that waits on something outside (a broker's last_operation): the
    job goes WAITING, gives up its lease, and the stage runs again after `after_seconds`."""

    after_seconds: float
    detail: str | None = None


StageOutcome = Poll | None


class LeaseLost(Exception):
    """Another worker owns the job now; stop touching it."""


class _Lease:
    """The one in-memory copy of a job this worker runs. Every write (stage progress, lease
    renewal) goes through `save`, serialised, so no write is made from a stale copy."""

    def __init__(self, engine: JobEngine, job: Job) -> None:
        self.engine = engine
        self.job = job
        self._lock = asyncio.Lock()

    async def save(self, change: Callable[[Job], Job]) -> Job:
        async with self._lock:
            changed = change(self.job)
            async with self.engine.store.write() as tx:
                stored = await tx.jobs.write_as_owner(
                    changed, self.engine.owner, self.engine.clock.now()
                )
            if stored is None:
                raise LeaseLost(self.job.guid)
            self.job = stored
            return stored

    async def renew_forever(self) -> None:
        interval = self.engine.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            await self.save(self._extended)

    def _extended(self, job: Job) -> Job:
        return dataclasses.replace(
            job, lease_expires_at=self.engine.clock.now() + self.engine.lease
        )


class JobContext:
    """What a stage function sees of its job."""

    def __init__(self, lease: _Lease, stage_index: int) -> None:
        self._lease = lease
        self.stage_index = stage_index

    @property
    def job(self) -> Job:
        return self._lease.job

    @property
    def params(self) -> Mapping[str, Any]:
        return self._lease.job.params

    async def progress(self, percent: int, detail: str | None = None) -> None:
        index, now = self.stage_index, self._lease.engine.clock.now()
        bounded = max(0, min(100, percent))
        await self._lease.save(
            lambda job: job.with_stage(
                index, dataclasses.replace(job.stages[index], progress=bounded, detail=detail), now
            )
        )

    async def warn(self, detail: str) -> None:
        await self._lease.save(
            lambda job: dataclasses.replace(job, warnings=(*job.warnings, detail))
        )

    async def set_result(self, **values: Any) -> None:
        await self._lease.save(
            lambda job: dataclasses.replace(job, result={**job.result, **values})
        )


StageFunction = Callable[[JobContext], Awaitable[StageOutcome]]


@dataclass(frozen=True)
class StageSpec:
    name: str
    run: StageFunction


@dataclass(frozen=True)
class Operation:
    """A kind of job: its name (CF's `operation`), queue and stages, declared as data."""

    name: str
    queue: str
    stages: tuple[StageSpec, ...]
    max_attempts: int = 3


@dataclass(frozen=True)
class Creator:
    guid: str
    name: str


def default_owner(instance_name: str = "") -> str:
    """`<instance>:<pid>:<random>`; the instance prefix lets a restarted process recover."""
    base = instance_name or socket.gethostname()
    return f"{base}:{os.getpid()}:{new_guid()[:8]}"


def _released(job: Job) -> Job:
    return dataclasses.replace(job, lease_owner=None, lease_expires_at=None)


class JobEngine:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        owner: str,
        lease_seconds: float = 30.0,
        poll_interval: float = 0.5,
        workers: int = 4,
        retry_delay_seconds: float = 2.0,
        queue_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_interval = poll_interval
        self.workers = workers
        self.retry_delay = timedelta(seconds=retry_delay_seconds)
        self.queue_limits = dict(queue_limits or {"default": 4})
        self.listeners: list[Callable[[Job], None]] = []
        self._operations: dict[str, Operation] = {}
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._stopping = False

    # --- declaration ------------------------------------------------------------------------

    def register(self, operation: Operation) -> None:
        if operation.name in self._operations:
            raise ValueError(f"operation {operation.name} registered twice")
        self._operations[operation.name] = operation

    def operation(self, name: str) -> Operation:
        found = self._operations.get(name)
        if found is None:
            raise Unprocessable(f"Unknown job operation {name!r}")
        return found

    def _limit_of(self, queue: str) -> int:
        return self.queue_limits.get(queue, 1)

    async def ensure_queues(self) -> None:
        async with self.store.write() as tx:
            names = set(self.queue_limits) | {op.queue for op in self._operations.values()}
            for name in sorted(names):
                await tx.queues.ensure(name, self._limit_of(name))

    # --- submission -------------------------------------------------------------------------

    async def submit_in(
        self,
        tx: Tx,
        operation_name: str,
        *,
        target_type: str,
        target_guid: str,
        params: Mapping[str, Any] | None = None,
        dedupe_key: str = "",
        creator: Creator | None = None,
    ) -> Job:
        """Queue a job inside the caller's transaction, so the job and the change that asked
        for it commit together. An identical unfinished job is returned instead of a copy.
        Call `wake()` once the transaction has committed."""
        operation = self.operation(operation_name)
        existing = await tx.jobs.find_pending(
            operation.name, f"{target_type}:{target_guid}", dedupe_key
        )
        if existing is not None:
            return existing
        await tx.queues.ensure(operation.queue, self._limit_of(operation.queue))
        now = self.clock.now()
        job = Job(
            guid=new_guid(),
            operation=operation.name,
            queue=operation.queue,
            target_type=target_type,
            target_guid=target_guid,
            state=JobState.QUEUED,
            created_at=now,
            updated_at=now,
            stages=tuple(Stage(name=spec.name) for spec in operation.stages),
            params=dict(params or {}),
            dedupe_key=dedupe_key,
            max_attempts=operation.max_attempts,
            context_id=current_context_id() or new_context_id(),
            creator_guid=creator.guid if creator else None,
            creator_name=creator.name if creator else None,
        )
        return await tx.jobs.add(job)

    async def submit(self, operation_name: str, **arguments: Any) -> Job:
        async with self.store.write() as tx:
            job = await self.submit_in(tx, operation_name, **arguments)
        self.wake()
        return job

    def wake(self) -> None:
        self._wake.set()

    async def cancel(self, guid: str) -> Job:
        """Cancel a job that has not started or is waiting; a running job runs to its end."""
        async with self.store.write() as tx:
            job = await tx.jobs.get(guid)
            if job is None:
                raise NotFound.of("Job")
            if job.state == JobState.RUNNING:
                raise Unprocessable("A running job cannot be cancelled")
            now = self.clock.now()
            _, after = await tx.jobs.update(
                guid, lambda current: current.moved(JobState.CANCELLED, now)
            )
        self._notify(after)
        return after

    # --- the dispatcher ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.ensure_queues()
        self._stopping = False
        self._dispatcher = asyncio.create_task(self._dispatch_forever(), name="job-dispatcher")

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop claiming; give running jobs a moment, then cancel them. A cancelled job keeps
        its lease until it expires, exactly as if this process had died."""
        self._stopping = True
        self._wake.set()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        tasks = list(self._running.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _dispatch_forever(self) -> None:
        while not self._stopping:
            claimed = None
            if len(self._running) < self.workers:
                try:
                    claimed = await self._claim()
                except Exception:  # the database may be briefly unreachable; try again later
                    log.exception("jobs.claim_failed")
            if claimed is not None:
                self._spawn(claimed)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)

    def _spawn(self, job: Job) -> None:
        task = asyncio.create_task(self._execute(job), name=f"job-{job.guid}")
        self._running[job.guid] = task

        def done(_task: asyncio.Task[None], guid: str = job.guid) -> None:
            self._running.pop(guid, None)
            self._wake.set()

        task.add_done_callback(done)

    async def _claim(self) -> Job | None:
        now = self.clock.now()
        async with self.store.write() as tx:
            return await tx.jobs.claim(self.owner, now, now + self.lease)

    async def run_once(self) -> Job | None:
        """Claim one job and run this attempt of it to its end (tests and tools)."""
        job = await self._claim()
        if job is None:
            return None
        await self._execute(job)
        async with self.store.read() as tx:
            return await tx.jobs.get(job.guid)

    async def recover_leases_of(self, owner_prefix: str) -> int:
        """At start-up: leases still held by an earlier life of this process (same configured
        instance name) expire now, so its jobs resume at once rather than after the lease
        (CloudStack's clean-up of a restarted management server's jobs)."""
        async with self.store.write() as tx:
            recovered = await tx.jobs.expire_leases_of(owner_prefix, self.clock.now())
        if recovered:
            log.info("jobs.recovered_leases", count=recovered)
            self.wake()
        return recovered

    # --- execution --------------------------------------------------------------------------

    async def _execute(self, job: Job) -> None:
        with context_scope(job.context_id, job=job.guid, operation=job.operation):
            lease = _Lease(self, job)
            renewer = asyncio.create_task(lease.renew_forever())
            try:
                final = await self._run_stages(lease)
                self._notify(final)
            except LeaseLost:
                log.warning("jobs.lease_lost")
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError, LeaseLost):
                    await renewer

    async def _run_stages(self, lease: _Lease) -> Job:
        operation = self._operations.get(lease.job.operation)
        if operation is None:
            failure = Unprocessable(f"No worker here runs operation {lease.job.operation!r}")
            return await self._finish(lease, JobState.FAILED, failure)
        log.info("jobs.running", attempt=lease.job.attempts, queue=lease.job.queue)
        first = lease.job.first_unfinished_stage()
        for index in range(
            len(lease.job.stages) if first is None else first, len(operation.stages)
        ):
            stopped = await self._run_stage(lease, operation.stages[index], index)
            if stopped is not None:
                return stopped
        return await self._finish(lease, JobState.COMPLETE)

    async def _run_stage(self, lease: _Lease, spec: StageSpec, index: int) -> Job | None:
        """Run one stage; None when it completed, else the job as this attempt left it."""
        await lease.save(lambda job: self._stage_moved(job, index, StageState.RUNNING))
        try:
            outcome = await spec.run(JobContext(lease, index))
        except LeaseLost:
            raise
        except OvercastError as error:
            return await self._fail(lease, index, error)
        except Exception as error:
            log.exception("jobs.stage_crashed", stage=spec.name)
            return await self._retry_or_fail(lease, index, error)
        if isinstance(outcome, Poll):
            return await self._wait(lease, index, outcome)
        await lease.save(
            lambda job: self._stage_moved(job, index, StageState.COMPLETE, progress=100)
        )
        return None

    def _stage_moved(self, job: Job, index: int, state: StageState, **changes: Any) -> Job:
        now = self.clock.now()
        return job.with_stage(index, job.stages[index].moved(state, now, **changes), now)

    async def _wait(self, lease: _Lease, index: int, poll: Poll) -> Job:
        now = self.clock.now()
        return await lease.save(
            lambda job: _released(
                self._stage_moved(job, index, StageState.WAITING, detail=poll.detail).moved(
                    JobState.WAITING, now, run_after=now + timedelta(seconds=poll.after_seconds)
                )
            )
        )

    async def _fail(self, lease: _Lease, index: int, error: OvercastError) -> Job:
        await lease.save(
            lambda job: self._stage_moved(job, index, StageState.FAILED, detail=error.detail)
        )
        return await self._finish(lease, JobState.FAILED, error)

    async def _retry_or_fail(self, lease: _Lease, index: int, error: Exception) -> Job:
        if lease.job.attempts < lease.job.max_attempts:
            now = self.clock.now()
            log.info("jobs.retrying", attempt=lease.job.attempts)
            retried = await lease.save(
                lambda job: _released(
                    self._stage_moved(job, index, StageState.PENDING).moved(
                        JobState.QUEUED, now, run_after=now + self.retry_delay
                    )
                )
            )
            self.wake()
            return retried
        # The exception's text may hold anything (even a secret): it goes to the log only.
        detail = (
            f"{lease.job.operation} failed unexpectedly ({type(error).__name__}) after "
            f"{lease.job.attempts} attempts; see the logs for context id {lease.job.context_id}"
        )
        return await self._fail(lease, index, OvercastError(detail))

    async def _finish(
        self, lease: _Lease, state: JobState, error: OvercastError | None = None
    ) -> Job:
        now = self.clock.now()
        errors = (JobError(kind=type(error).__name__, detail=error.detail),) if error else ()
        finished = await lease.save(
            lambda job: _released(job.moved(state, now, errors=(*job.errors, *errors)))
        )
        log.info("jobs.finished", state=state.value)
        self.wake()
        return finished

    def _notify(self, job: Job) -> None:
        for listener in self.listeners:
            try:
                listener(job)
            except Exception:
                log.exception("jobs.listener_failed")

    def running_guids(self) -> list[str]:
        return list(self._running)

"""The job engine on both stores: stages, dedupe, failures, retries, polls, leases, limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from overcast.core.context import context_scope, current_context_id
from overcast.jobs.engine import Creator, JobContext, JobEngine, Operation, Poll, StageSpec
from overcast.models.errors import Unprocessable
from overcast.models.lifecycle import JobState, StageState
from overcast.store.sql.store import SqlStore
from overcast.testing.clock import FakeClock


def _engine(store: SqlStore, clock: FakeClock, owner: str = "w1", **options: object) -> JobEngine:
    return JobEngine(
        store,
        clock,
        owner=owner,
        lease_seconds=30,
        poll_interval=0.01,
        retry_delay_seconds=5,
        **options,
    )  # type: ignore[arg-type]


def _stage(
    name: str, log: list[str], action: Callable[[JobContext], object] | None = None
) -> StageSpec:
    async def run(context: JobContext) -> Poll | None:
        log.append(name)
        result = action(context) if action else None
        if asyncio.iscoroutine(result):
            result = await result
        return result if isinstance(result, Poll) else None

    return StageSpec(name=name, run=run)


async def test_stages_run_in_order_to_completion(store: SqlStore, clock: FakeClock) -> None:
    log: list[str] = []
    engine = _engine(store, clock)

    async def report(context: JobContext) -> None:
        await context.progress(50, "half way")
        await context.set_result(deleted=3)
        await context.warn("something to know")

    engine.register(
        Operation("thing.delete", "default", (_stage("one", log, report), _stage("two", log)))
    )
    submitted = await engine.submit(
        "thing.delete",
        target_type="thing",
        target_guid="t1",
        creator=Creator(guid="u1", name="alice"),
    )
    assert submitted.state == JobState.QUEUED
    assert [stage.state for stage in submitted.stages] == [StageState.PENDING] * 2
    done = await engine.run_once()
    assert done is not None and done.state == JobState.COMPLETE
    assert log == ["one", "two"]
    assert [stage.state for stage in done.stages] == [StageState.COMPLETE] * 2
    assert [stage.progress for stage in done.stages] == [100, 100]
    assert done.result == {"deleted": 3} and done.warnings == ("something to know",)
    assert done.creator_name == "alice" and done.lease_owner is None
    assert await engine.run_once() is None


async def test_identical_pending_job_is_returned(store: SqlStore, clock: FakeClock) -> None:
    engine = _engine(store, clock)
    engine.register(Operation("thing.delete", "default", (_stage("one", []),)))
    first = await engine.submit("thing.delete", target_type="thing", target_guid="t1")
    again = await engine.submit("thing.delete", target_type="thing", target_guid="t1")
    other = await engine.submit("thing.delete", target_type="thing", target_guid="t2")
    assert again.guid == first.guid and other.guid != first.guid
    await engine.run_once()
    await engine.run_once()
    later = await engine.submit("thing.delete", target_type="thing", target_guid="t1")
    assert later.guid != first.guid


async def test_domain_error_fails_the_job(store: SqlStore, clock: FakeClock) -> None:
    log: list[str] = []
    engine = _engine(store, clock)

    def refuse(_context: JobContext) -> None:
        raise Unprocessable("the space still has service instances")

    engine.register(
        Operation("thing.delete", "default", (_stage("one", log, refuse), _stage("two", log)))
    )
    await engine.submit("thing.delete", target_type="thing", target_guid="t1")
    failed = await engine.run_once()
    assert failed is not None and failed.state == JobState.FAILED
    assert [(e.kind, e.detail) for e in failed.errors] == [
        ("Unprocessable", "the space still has service instances")
    ]
    assert [s.state for s in failed.stages] == [StageState.FAILED, StageState.PENDING]
    assert log == ["one"]


async def test_unexpected_errors_retry_then_fail_without_leaking(
    store: SqlStore, clock: FakeClock
) -> None:
    engine = _engine(store, clock)

    def crash(_context: JobContext) -> None:
        raise RuntimeError("postgresql://user:hunter2@db failed")

    engine.register(
        Operation("thing.delete", "default", (_stage("one", [], crash),), max_attempts=2)
    )
    await engine.submit("thing.delete", target_type="thing", target_guid="t1")
    first = await engine.run_once()
    assert first is not None and first.state == JobState.QUEUED and first.attempts == 1
    assert await engine.run_once() is None  # waits for the retry delay
    clock.advance(6)
    final = await engine.run_once()
    assert final is not None and final.state == JobState.FAILED and final.attempts == 2
    assert "RuntimeError" in final.errors[0].detail
    assert "hunter2" not in final.errors[0].detail


async def test_poll_waits_and_resumes_the_same_stage(store: SqlStore, clock: FakeClock) -> None:
    log: list[str] = []
    polls = iter([Poll(after_seconds=10, detail="broker says in progress"), None])
    engine = _engine(store, clock)
    engine.register(
        Operation(
            "thing.create",
            "default",
            (_stage("provision", log, lambda _c: next(polls)), _stage("bind", log)),
        )
    )
    await engine.submit("thing.create", target_type="thing", target_guid="t1")
    waiting = await engine.run_once()
    assert waiting is not None and waiting.state == JobState.WAITING
    assert waiting.stages[0].state == StageState.WAITING
    assert waiting.stages[0].detail == "broker says in progress"
    assert await engine.run_once() is None
    clock.advance(11)
    done = await engine.run_once()
    assert done is not None and done.state == JobState.COMPLETE
    assert log == ["provision", "provision", "bind"]
    assert done.attempts == 1


async def test_dead_worker_job_resumes_at_its_first_unfinished_stage(
    store: SqlStore, clock: FakeClock
) -> None:
    log: list[str] = []
    in_second_stage = asyncio.Event()
    first_life = True

    async def second(_context: JobContext) -> None:
        if first_life:
            in_second_stage.set()
            await asyncio.Event().wait()  # hangs until the worker "dies"

    operation = Operation(
        "thing.delete",
        "default",
        (_stage("one", log), _stage("two", log, second), _stage("three", log)),
    )
    worker_a = _engine(store, clock, owner="a")
    worker_b = _engine(store, clock, owner="b")
    worker_a.register(operation)
    worker_b.register(operation)
    await worker_a.submit("thing.delete", target_type="thing", target_guid="t1")
    dying = asyncio.create_task(worker_a.run_once())
    await asyncio.wait_for(in_second_stage.wait(), timeout=10)
    dying.cancel()  # the worker dies: no clean-up, the lease stays until it expires
    with pytest.raises(asyncio.CancelledError):
        await dying
    first_life = False
    assert await worker_b.run_once() is None  # lease still valid
    clock.advance(31)
    resumed = await worker_b.run_once()
    assert resumed is not None and resumed.state == JobState.COMPLETE
    assert log == ["one", "two", "two", "three"]
    assert resumed.attempts == 2 and resumed.lease_owner is None


async def test_dispatcher_respects_concurrency_and_targets(
    store: SqlStore, clock: FakeClock
) -> None:
    running = 0
    peak = 0
    release = asyncio.Event()
    order: list[str] = []

    async def busy(context: JobContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        order.append(context.job.target_guid)
        await release.wait()
        running -= 1

    engine = _engine(store, clock, workers=8, queue_limits={"slow": 2})
    engine.register(Operation("thing.work", "slow", (StageSpec("work", busy),)))
    engine.register(Operation("thing.other", "slow", (StageSpec("work", busy),)))
    await engine.start()
    try:
        jobs = [
            await engine.submit("thing.work", target_type="thing", target_guid=f"t{i}")
            for i in range(4)
        ]
        same_target = await engine.submit("thing.other", target_type="thing", target_guid="t0")
        for _ in range(100):
            if running == 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert running == 2 and peak == 2
        release.set()
        for _ in range(500):
            async with store.read() as tx:
                states = [(await tx.jobs.require(j.guid)).state for j in [*jobs, same_target]]
            if all(state == JobState.COMPLETE for state in states):
                break
            await asyncio.sleep(0.02)
        assert all(state == JobState.COMPLETE for state in states)
        assert peak == 2
    finally:
        await engine.stop()


async def test_jobs_carry_the_context_id(store: SqlStore, clock: FakeClock) -> None:
    seen: list[str | None] = []
    engine = _engine(store, clock)
    engine.register(
        Operation(
            "thing.delete",
            "default",
            (_stage("one", [], lambda _c: seen.append(current_context_id())),),
        )
    )
    with context_scope("req-123"):
        job = await engine.submit("thing.delete", target_type="thing", target_guid="t1")
    assert job.context_id == "req-123"
    await engine.run_once()
    assert seen == ["req-123"]


async def test_cancel_a_queued_job(store: SqlStore, clock: FakeClock) -> None:
    engine = _engine(store, clock)
    engine.register(Operation("thing.delete", "default", (_stage("one", []),)))
    job = await engine.submit("thing.delete", target_type="thing", target_guid="t1")
    cancelled = await engine.cancel(job.guid)
    assert cancelled.state == JobState.CANCELLED
    assert await engine.run_once() is None

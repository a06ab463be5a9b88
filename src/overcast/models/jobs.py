"""Jobs: persisted long operations with ordered stages (CloudStack's async jobs)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from overcast.models.lifecycle import (
    JOB_TRANSITIONS,
    STAGE_TRANSITIONS,
    JobState,
    StageState,
    transition,
)


@dataclass(frozen=True)
class Stage:
    name: str
    state: StageState = StageState.PENDING
    progress: int = 0  # percent
    detail: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def moved(self, target: StageState, now: datetime, **changes: Any) -> Stage:
        state = transition(STAGE_TRANSITIONS, self.state, target, what=f"stage {self.name}")
        started = self.started_at or (now if state == StageState.RUNNING else None)
        finished = now if state in (StageState.COMPLETE, StageState.FAILED) else None
        return replace(self, state=state, started_at=started, finished_at=finished, **changes)


@dataclass(frozen=True)
class JobError:
    """A CF-shaped error of a failed job; `kind` names the domain error class."""

    kind: str
    detail: str


@dataclass(frozen=True)
class Job:
    guid: str
    operation: str
    queue: str
    target_type: str
    target_guid: str
    state: JobState
    created_at: datetime
    updated_at: datetime
    stages: tuple[Stage, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    # Jobs with the same operation, target and key are the same request: the pending one is
    # returned instead of a second copy.
    dedupe_key: str = ""
    attempts: int = 0
    max_attempts: int = 3
    context_id: str | None = None
    creator_guid: str | None = None
    creator_name: str | None = None
    errors: tuple[JobError, ...] = ()
    warnings: tuple[str, ...] = ()
    result: dict[str, Any] = field(default_factory=dict)
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    run_after: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Optimistic concurrency: every write checks and bumps it.
    version: int = 0

    @property
    def target_key(self) -> str:
        return f"{self.target_type}:{self.target_guid}"

    @property
    def finished(self) -> bool:
        return self.state in (JobState.COMPLETE, JobState.FAILED, JobState.CANCELLED)

    def first_unfinished_stage(self) -> int | None:
        for index, stage in enumerate(self.stages):
            if stage.state not in (StageState.COMPLETE, StageState.SKIPPED):
                return index
        return None

    def moved(self, target: JobState, now: datetime, **changes: Any) -> Job:
        state = transition(JOB_TRANSITIONS, self.state, target, what=f"job {self.guid}")
        finished = (
            now if state in (JobState.COMPLETE, JobState.FAILED, JobState.CANCELLED) else None
        )
        return replace(self, state=state, updated_at=now, finished_at=finished, **changes)

    def with_stage(self, index: int, stage: Stage, now: datetime) -> Job:
        stages = list(self.stages)
        stages[index] = stage
        return replace(self, stages=tuple(stages), updated_at=now)


@dataclass(frozen=True)
class Queue:
    """A named job queue (a SEDA stage) with a concurrency limit operators can change."""

    name: str
    concurrency: int
    updated_at: datetime | None = None


@dataclass(frozen=True)
class QueueStats:
    name: str
    concurrency: int
    queued: int
    running: int
    waiting: int
    oldest_queued_at: datetime | None
    completed_last_hour: int

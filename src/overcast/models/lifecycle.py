"""Lifecycles as transition tables held as data. Every change of state goes through
`transition`, which refuses an edge the table does not list."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from overcast.models.errors import IllegalTransition

S = TypeVar("S", bound=StrEnum)

TransitionTable = Mapping[S, frozenset[S]]


def transition(table: TransitionTable[S], current: S, target: S, *, what: str) -> S:
    """Return `target` when the table allows current -> target; staying put is always allowed
    (commands are idempotent: a repeated `start` of a started app is a no-op, not an error)."""
    if current == target:
        return target
    if target not in table.get(current, frozenset()):
        raise IllegalTransition(f"{what} cannot go from {current.value} to {target.value}")
    return target


class AppState(StrEnum):
    STOPPED = "STOPPED"
    STARTED = "STARTED"


APP_TRANSITIONS: TransitionTable[AppState] = {
    AppState.STOPPED: frozenset({AppState.STARTED}),
    AppState.STARTED: frozenset({AppState.STOPPED}),
}


class DropletState(StrEnum):
    AWAITING_UPLOAD = "AWAITING_UPLOAD"
    PROCESSING_UPLOAD = "PROCESSING_UPLOAD"
    STAGING = "STAGING"
    STAGED = "STAGED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


# Uploaded droplets: AWAITING_UPLOAD -> PROCESSING_UPLOAD -> STAGED | FAILED; staged ones:
# STAGING -> STAGED | FAILED; a finished droplet can only expire.
DROPLET_TRANSITIONS: TransitionTable[DropletState] = {
    DropletState.AWAITING_UPLOAD: frozenset(
        {DropletState.PROCESSING_UPLOAD, DropletState.FAILED, DropletState.EXPIRED}
    ),
    DropletState.PROCESSING_UPLOAD: frozenset({DropletState.STAGED, DropletState.FAILED}),
    DropletState.STAGING: frozenset({DropletState.STAGED, DropletState.FAILED}),
    DropletState.STAGED: frozenset({DropletState.EXPIRED}),
    DropletState.FAILED: frozenset({DropletState.EXPIRED}),
    DropletState.EXPIRED: frozenset(),
}


class BuildState(StrEnum):
    STAGING = "STAGING"
    STAGED = "STAGED"
    FAILED = "FAILED"


# A build stages once: STAGING -> STAGED | FAILED, and stays there.
BUILD_TRANSITIONS: TransitionTable[BuildState] = {
    BuildState.STAGING: frozenset({BuildState.STAGED, BuildState.FAILED}),
    BuildState.STAGED: frozenset(),
    BuildState.FAILED: frozenset(),
}


class PackageState(StrEnum):
    AWAITING_UPLOAD = "AWAITING_UPLOAD"
    PROCESSING_UPLOAD = "PROCESSING_UPLOAD"
    READY = "READY"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


# AWAITING_UPLOAD -> PROCESSING_UPLOAD -> READY | FAILED; a package can expire from any state
# but PROCESSING_UPLOAD (an upload being processed finishes first).
PACKAGE_TRANSITIONS: TransitionTable[PackageState] = {
    PackageState.AWAITING_UPLOAD: frozenset(
        {PackageState.PROCESSING_UPLOAD, PackageState.FAILED, PackageState.EXPIRED}
    ),
    PackageState.PROCESSING_UPLOAD: frozenset({PackageState.READY, PackageState.FAILED}),
    PackageState.READY: frozenset({PackageState.EXPIRED}),
    PackageState.FAILED: frozenset({PackageState.EXPIRED}),
    PackageState.EXPIRED: frozenset(),
}


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


JOB_TRANSITIONS: TransitionTable[JobState] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    # RUNNING -> QUEUED: a failed attempt that will be retried gives its lease back.
    JobState.RUNNING: frozenset(
        {
            JobState.COMPLETE,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.WAITING,
            JobState.QUEUED,
        }
    ),
    JobState.WAITING: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}),
    JobState.COMPLETE: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}

FINISHED_JOB_STATES = frozenset({JobState.COMPLETE, JobState.FAILED, JobState.CANCELLED})


class StageState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


STAGE_TRANSITIONS: TransitionTable[StageState] = {
    StageState.PENDING: frozenset({StageState.RUNNING, StageState.SKIPPED}),
    # RUNNING -> PENDING: the worker lost its lease or the attempt will be retried.
    StageState.RUNNING: frozenset(
        {StageState.COMPLETE, StageState.FAILED, StageState.WAITING, StageState.PENDING}
    ),
    StageState.WAITING: frozenset({StageState.RUNNING, StageState.FAILED}),
    StageState.COMPLETE: frozenset(),
    StageState.FAILED: frozenset(),
    StageState.SKIPPED: frozenset(),
}


def cf_job_state(state: JobState) -> str:
    """How a job's state reads at /v3/jobs (CF knows only four)."""
    if state == JobState.COMPLETE:
        return "COMPLETE"
    if state in (JobState.FAILED, JobState.CANCELLED):
        return "FAILED"
    if state == JobState.WAITING:
        return "POLLING"
    return "PROCESSING"

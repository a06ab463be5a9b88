"""Asking for a scheduling run (see scheduler.py), from any use case that changes what should
run, inside the transaction that makes the change."""

from __future__ import annotations

from overcast.jobs.engine import JobEngine
from overcast.models.resources import App, Process
from overcast.store.base import Tx

SCHEDULE_OPERATION = "process.schedule"
SCHEDULE_QUEUE = "placement"


def schedule_key(app: App, process: Process) -> str:
    """Identical desired state => identical key: a repeat request joins the queued job, while a
    change queues a new one behind the running job."""
    return ":".join(
        [app.state.value, process.version, str(process.instances), app.current_droplet_guid or ""]
    )


async def request_schedule(tx: Tx, engine: JobEngine, app: App, process: Process) -> None:
    """Queue a scheduling run inside the caller's transaction (call engine.wake() after)."""
    await engine.submit_in(
        tx,
        SCHEDULE_OPERATION,
        target_type="process",
        target_guid=process.guid,
        params={"app_guid": app.guid},
        dedupe_key=schedule_key(app, process),
    )

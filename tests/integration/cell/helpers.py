"""Small waits and look-ups shared by the cell tests."""

from __future__ import annotations

from typing import Any

import httpx

from overcast.bus.messages import InstanceSpec, StartInstance, StopInstance
from overcast.bus.subjects import ALL_APP_LOGS, CELL_HEARTBEAT, INSTANCE_EVENT
from overcast.cell.agent import CellAgent
from overcast.cell.table import InstanceRecord
from overcast.models.instances import InstanceState
from overcast.testing.cells import Recorder, eventually
from tests.integration.cell.conftest import Cells


async def recorder(cells: Cells) -> Recorder:
    return await Recorder().listen(cells.bus, INSTANCE_EVENT, CELL_HEARTBEAT, ALL_APP_LOGS)


def record_of(agent: CellAgent, guid: str) -> InstanceRecord | None:
    return next((r for r in agent.instances() if r.guid == guid), None)


async def wait_state(
    agent: CellAgent, guid: str, state: InstanceState, within: float = 15.0
) -> InstanceRecord:
    def reached() -> InstanceRecord | None:
        record = record_of(agent, guid)
        return record if record is not None and record.state == state else None

    found: InstanceRecord = await eventually(reached, within=within, what=f"{guid} {state}")
    return found


async def start(cells: Cells, agent: CellAgent, spec: InstanceSpec) -> dict[str, Any]:
    reply = await cells.rpc(agent, StartInstance(instance=spec))
    cells.note_pids()
    return reply


async def start_running(cells: Cells, agent: CellAgent, spec: InstanceSpec) -> InstanceRecord:
    reply = await start(cells, agent, spec)
    assert reply["accepted"], reply
    record = await wait_state(agent, spec.instance_guid, InstanceState.RUNNING)
    cells.note_pids()
    return record


async def stop(cells: Cells, agent: CellAgent, spec: InstanceSpec) -> dict[str, Any]:
    return await cells.rpc(
        agent, StopInstance(instance_guid=spec.instance_guid, version=spec.version)
    )


def transitions(events: list[dict[str, Any]], guid: str) -> list[tuple[str, str]]:
    return [
        (event["from_state"], event["to_state"])
        for event in events
        if event["instance"]["instance_guid"] == guid
    ]


async def get_json(port: int, path: str = "/") -> Any:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{port}{path}")
        response.raise_for_status()
        return response.json()

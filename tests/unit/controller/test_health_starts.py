"""The health manager's starts in one request: each process's in order, different processes at
once, so that a cell that does not answer (a lost reply costs the whole RPC timeout) holds up
only its own process's starts (found by the bus fault test)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from overcast.controller.health import HealthManagement, StartRequest
from overcast.controller.scheduler import StartOutcome
from tests.unit.controller.test_health import app, process


class SlowScheduler:
    """start_index as a cell that takes `seconds[process]` to answer."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self.calls: list[tuple[str, int, str]] = []

    async def start_index(
        self, process_guid: str, index: int, *, crash_count: int = 0, version: str | None = None
    ) -> StartOutcome:
        self.calls.append((process_guid, index, "asked"))
        await asyncio.sleep(self.seconds[process_guid])
        self.calls.append((process_guid, index, "answered"))
        return StartOutcome(accepted=True)


def _management(scheduler: SlowScheduler) -> HealthManagement:
    # Starts need neither the store nor the engine.
    parts: list[Any] = [None, None, None]
    return HealthManagement(*parts, scheduler=scheduler, directory=None)  # type: ignore[arg-type]


def _known() -> dict[str, Any]:
    return {
        "p-1": (app(), process()),
        "p-2": (app(), dataclasses.replace(process(), guid="p-2")),
    }


async def test_a_slow_cell_holds_up_only_its_own_process_s_starts() -> None:
    scheduler = SlowScheduler({"p-1": 0.05, "p-2": 0.0})
    items = [
        StartRequest(process_guid=guid, index=index, reason="CRASHED")
        for guid, index in (("p-1", 0), ("p-2", 0), ("p-1", 1), ("p-2", 1))
    ]
    results = await _management(scheduler)._start_all(items, _known())
    assert [(r.process_guid, r.index, r.accepted) for r in results] == [
        ("p-1", 0, True),
        ("p-2", 0, True),
        ("p-1", 1, True),
        ("p-2", 1, True),
    ]
    # p-2 was done while p-1's first start still waited for its cell ...
    assert scheduler.calls.index(("p-2", 1, "answered")) < scheduler.calls.index(
        ("p-1", 0, "answered")
    )
    # ... and each process's starts went in order, one at a time.
    p1 = [call for call in scheduler.calls if call[0] == "p-1"]
    assert p1 == [
        ("p-1", 0, "asked"),
        ("p-1", 0, "answered"),
        ("p-1", 1, "asked"),
        ("p-1", 1, "answered"),
    ]


async def test_refusals_by_desired_state_come_back_in_place() -> None:
    scheduler = SlowScheduler({"p-1": 0.0, "p-2": 0.0})
    items = [
        StartRequest(process_guid="p-1", index=5, reason="MISSING"),  # out of range
        StartRequest(process_guid="gone", index=0, reason="MISSING"),
        StartRequest(process_guid="p-2", index=1, reason="MISSING"),
    ]
    results = await _management(scheduler)._start_all(items, _known())
    assert [(r.process_guid, r.accepted, r.reason) for r in results] == [
        ("p-1", False, "index out of range"),
        ("gone", False, "not desired"),
        ("p-2", True, None),
    ]
    assert [call[:2] for call in scheduler.calls] == [("p-2", 1), ("p-2", 1)]

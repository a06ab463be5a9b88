"""How fast the health manager's planner converges a large fleet (health/converge.py).

1,000 cells and 100,000 instances (20,000 processes x 5), with what a real fleet has at any
moment: a few lost cells, crash-looping and freshly crashed instances, missing indices, scaled
down and scaled up processes, a deploy in flight (old versions), duplicates and unknown
instances. The planner runs on every heartbeat and instance event, so this is its budget.

Run from the repository root: `.venv/bin/python bench/converge.py`. Prints figures only.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter

from overcast.health.converge import (
    ActualInstance,
    CellHealth,
    DesiredProcess,
    DesiredState,
    Plan,
    converge,
)
from overcast.models.instances import CellState, InstanceState

NOW = 1_700_000_000.0
HEARTBEAT_SECONDS = 5.0
CELLS = 1_000
PROCESSES = 20_000
INSTANCES_PER_PROCESS = 5
RUNS = 7
# Shares of the fleet in each unusual condition.
LOST_CELLS = 0.01
CRASHED = 0.01
MISSING = 0.01
DUPLICATED = 0.005
SCALED_DOWN = 0.02
SCALED_UP = 0.01
DEPLOYING = 0.01
UNKNOWN_INSTANCES = 200


def make_cells(rng: random.Random) -> dict[str, CellHealth]:
    cells = {}
    for n in range(CELLS):
        lost = rng.random() < LOST_CELLS
        # Alive cells heard from within one interval; lost ones went quiet a minute ago.
        age = 60.0 if lost else rng.uniform(0.0, HEARTBEAT_SECONDS)
        cells[f"cell-{n:04d}"] = CellHealth(CellState.ENABLED, NOW - age, HEARTBEAT_SECONDS)
    return cells


def make_desired(rng: random.Random) -> DesiredState:
    processes = {}
    for n in range(PROCESSES):
        guid = f"proc-{n:05d}"
        draw = rng.random()
        if draw < SCALED_DOWN:
            instances = INSTANCES_PER_PROCESS - 1
        elif draw < SCALED_DOWN + SCALED_UP:
            instances = INSTANCES_PER_PROCESS + 1
        else:
            instances = INSTANCES_PER_PROCESS
        version = "v2" if rng.random() < DEPLOYING else "v1"
        processes[guid] = DesiredProcess(guid, f"app-{n:05d}", version, instances)
    return DesiredState(processes, fetched_at=NOW - 10.0, refreshes=40)


def make_actual(rng: random.Random, cell_ids: list[str]) -> list[ActualInstance]:
    actual = []
    for n in range(PROCESSES):
        process_guid = f"proc-{n:05d}"
        for index in range(INSTANCES_PER_PROCESS):
            if rng.random() < MISSING:
                continue
            copies = 2 if rng.random() < DUPLICATED else 1
            for copy in range(copies):
                actual.append(
                    instance(rng, f"{process_guid}-{index}-{copy}", process_guid, index, cell_ids)
                )
    for n in range(UNKNOWN_INSTANCES):
        actual.append(instance(rng, f"unknown-{n}", f"deleted-{n}", 0, cell_ids))
    rng.shuffle(actual)
    return actual


def instance(
    rng: random.Random, guid: str, process_guid: str, index: int, cell_ids: list[str]
) -> ActualInstance:
    if rng.random() < CRASHED:
        crashed_at = NOW - rng.uniform(0.0, 1_200.0)
        return ActualInstance(
            guid,
            process_guid,
            rng.choice(cell_ids),
            index,
            "v1",
            InstanceState.CRASHED,
            since=crashed_at,
            crash_count=rng.randint(1, 9),
            crashed_at=crashed_at,
            crash_reason="CRASHED",
        )
    return ActualInstance(
        guid, process_guid, rng.choice(cell_ids), index, "v1", InstanceState.RUNNING, NOW - 3_600
    )


def summary(plan: Plan) -> str:
    starts = Counter(str(start.reason) for start in plan.starts)
    stops = Counter(str(stop.reason) for stop in plan.stops)
    return (
        f"starts {len(plan.starts):,} {dict(sorted(starts.items()))}\n"
        f"stops {len(plan.stops):,} {dict(sorted(stops.items()))}\n"
        f"waiting {len(plan.waiting):,}, lost cells {len(plan.lost_cells)}, "
        f"unknown {len(plan.unknown_since)}"
    )


def main() -> None:
    rng = random.Random(7)
    cells = make_cells(rng)
    desired = make_desired(rng)
    actual = make_actual(rng, list(cells))
    # Half the unknown instances were first seen two refreshes ago: due to be stopped.
    unknown_since = {f"unknown-{n}": desired.refreshes - 2 for n in range(0, UNKNOWN_INSTANCES, 2)}
    times = []
    plan = None
    for _ in range(RUNS):
        started = time.perf_counter()
        plan = converge(desired, actual, cells, NOW, unknown_since=unknown_since)
        times.append(time.perf_counter() - started)
    assert plan is not None
    print(f"converge(): {len(cells):,} cells, {len(desired.processes):,} processes, ", end="")
    print(f"{len(actual):,} instances; median of {RUNS} runs")
    print(f"median {statistics.median(times) * 1000:.1f} ms (min {min(times) * 1000:.1f} ms)")
    print(summary(plan))


if __name__ == "__main__":
    main()

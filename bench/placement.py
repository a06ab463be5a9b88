"""How fast the placement planner places a large batch (controller/placement.py).

Run from the repository root: `.venv/bin/python bench/placement.py`. Prints figures only.
"""

from __future__ import annotations

import random
import statistics
import time

from overcast.controller.placement import Capacity, CellView, PlacementRequest, place
from overcast.models.instances import CellState

ZONES = ("z1", "z2", "z3")
# (memory MB, disk MB, containers): the capacity shapes of a mixed fleet.
SHAPES = ((16_384, 65_536, 250), (32_768, 131_072, 250), (65_536, 262_144, 500))
SIZES_MB = (128, 256, 512, 1024, 2048)
RUNS = 5


def make_cells(count: int, processes: int, rng: random.Random) -> list[CellView]:
    cells = []
    for n in range(count):
        memory, disk, slots = rng.choice(SHAPES)
        # About a third of the cells are already busy with up to half their capacity.
        load = rng.uniform(0.0, 0.5) if n % 3 == 0 else 0.0
        existing = {
            f"p{rng.randrange(processes)}": rng.randint(1, 2) for _ in range(int(load * 20))
        }
        cells.append(
            CellView(
                cell_id=f"cell-{n:04d}",
                zone=ZONES[n % len(ZONES)],
                # A few cells are out of rotation, as in any real fleet.
                state=CellState.DISABLED if n % 97 == 0 else CellState.ENABLED,
                stacks=frozenset({"cflinuxfs4"}),
                tags=frozenset({"gpu"}) if n % 50 == 0 else frozenset(),
                capacity=Capacity(memory, disk, slots),
                allocated=Capacity(int(memory * load), int(disk * load), int(slots * load)),
                process_instances=existing,
                starting=rng.randint(0, 3) if load else 0,
            )
        )
    return cells


def make_requests(count: int, processes: int, rng: random.Random) -> list[PlacementRequest]:
    sizes = {f"p{n}": rng.choice(SIZES_MB) for n in range(processes)}
    requests = []
    for n in range(count):
        process = f"p{n % processes}"
        requests.append(
            PlacementRequest(
                key=f"{process}:{n // processes}",
                process_guid=process,
                memory_mb=sizes[process],
                disk_mb=1024,
                stack="cflinuxfs4",
            )
        )
    return requests


def measure(cells: int, requests: int, processes: int) -> tuple[float, int, int]:
    rng = random.Random(7)
    cell_views = make_cells(cells, processes, rng)
    batch = make_requests(requests, processes, rng)
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        result = place(batch, cell_views)
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(result.placed), len(result.unplaced)


def main() -> None:
    print(f"place(): median of {RUNS} runs")
    print(
        f"{'cells':>6} {'requests':>9} {'processes':>10} {'placed':>7} {'unplaced':>9}"
        f" {'total s':>9} {'placements/s':>13} {'requests/s':>11}"
    )
    # The last case asks for more than the fleet has: the unplaced path, with its reasons.
    for cells, requests, processes in ((100, 1_000, 40), (1_000, 10_000, 300), (150, 10_000, 300)):
        seconds, placed, unplaced = measure(cells, requests, processes)
        print(
            f"{cells:>6} {requests:>9} {processes:>10} {placed:>7} {unplaced:>9}"
            f" {seconds:>9.3f} {placed / seconds:>13,.0f} {requests / seconds:>11,.0f}"
        )


if __name__ == "__main__":
    main()

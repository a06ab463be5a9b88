"""A restarted cell re-adopts what still runs and reports what died meanwhile."""

from __future__ import annotations

import os
import signal

from overcast.bus.subjects import CELL_HEARTBEAT, INSTANCE_EVENT
from overcast.models.instances import InstanceState
from overcast.testing.cells import eventually, instance_spec
from tests.integration.cell.conftest import Cells, Droplets, cell_settings
from tests.integration.cell.helpers import (
    get_json,
    record_of,
    recorder,
    start,
    start_running,
    transitions,
    wait_state,
)


async def test_restart_readopts_running_instances(cells: Cells, droplets: Droplets) -> None:
    settings = cell_settings()
    work_dir = cells.root / "cell"
    first = await cells.start(settings, work_dir=work_dir)
    url = droplets.url(droplets.hello)
    alive = instance_spec(droplets.hello, url, index=0)
    doomed = instance_spec(droplets.hello, url, index=1)
    kept = await start_running(cells, first, alive)
    lost = await start_running(cells, first, doomed)
    await first.stop(stop_instances=False)
    assert kept.pid is not None and lost.pid is not None
    os.kill(lost.pid, signal.SIGKILL)

    seen = await recorder(cells)
    # A long interval: a heartbeat soon after start can only be the immediate one.
    second = await cells.start(
        settings.model_copy(update={"heartbeat_interval_seconds": 60}), work_dir=work_dir
    )
    assert second.cell_id == first.cell_id
    beat = (await eventually(lambda: seen.of(CELL_HEARTBEAT), within=2))[0]
    assert {i["instance_guid"] for i in beat["instances"]} == {
        alive.instance_guid,
        doomed.instance_guid,
    }

    crashed = await wait_state(second, doomed.instance_guid, InstanceState.CRASHED)
    assert crashed.reason == "CELL_RESTARTED"
    await eventually(
        lambda: (
            transitions(seen.of(INSTANCE_EVENT), doomed.instance_guid) == [("RUNNING", "CRASHED")]
        ),
        what="the CELL_RESTARTED crash event",
    )

    adopted = record_of(second, alive.instance_guid)
    assert adopted is not None and adopted.state == InstanceState.RUNNING
    assert adopted.pid == kept.pid
    assert kept.port is not None
    assert (await get_json(kept.port))["guid"] == alive.instance_guid
    again = await start(cells, second, alive)
    assert again["accepted"] and again["instance"]["state"] == "RUNNING"
    assert record_of(second, alive.instance_guid).pid == kept.pid  # type: ignore[union-attr]
    assert second.seq > crashed.seq - 1

    # Still supervised: an exit now is seen and reported with its status.
    os.kill(kept.pid, signal.SIGKILL)
    dead = await wait_state(second, alive.instance_guid, InstanceState.CRASHED)
    assert dead.reason == "CRASHED"


async def test_restart_redoes_a_claimed_instance(cells: Cells, droplets: Droplets) -> None:
    settings = cell_settings()
    work_dir = cells.root / "cell"
    first = await cells.start(settings, work_dir=work_dir)
    spec = instance_spec(droplets.hello, droplets.url(droplets.hello))
    await start(cells, first, spec)
    await first.stop(stop_instances=False)  # most likely still CLAIMED (downloading)
    second = await cells.start(settings, work_dir=work_dir)
    await wait_state(second, spec.instance_guid, InstanceState.RUNNING)

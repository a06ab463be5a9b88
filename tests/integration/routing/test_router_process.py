"""`overcast router` as a real process on NATS: it learns the routes the cells register, serves
them, reports ready on its status port, and exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from overcast.testing.platform import eventually, nats_buses, start_platform
from overcast.testing.servers import free_port

ENTRY = "from overcast.cmd.main import main; main()"


async def test_a_router_process_serves_what_the_cells_register(
    tmp_path: Path, nats_server: Any
) -> None:
    port, status = free_port(), free_port()
    env = {
        **os.environ,
        "OVERCAST_DATA_DIR": str(tmp_path / "router-data"),
        "OVERCAST_LOG_FORMAT": "json",
        "OVERCAST_BUS__KIND": "nats",
        "OVERCAST_BUS__URL": nats_server.url,
        "OVERCAST_ROUTER__PORT": str(port),
        "OVERCAST_ROUTER__STATUS_PORT": str(status),
        "OVERCAST_ROUTER__REGISTER_INTERVAL_SECONDS": "0.5",
        "OVERCAST_ROUTER__PRUNE_THRESHOLD_SECONDS": "3",
    }
    log_path = tmp_path / "router.log"
    with log_path.open("wb") as log:
        router = subprocess.Popen(
            [sys.executable, "-c", ENTRY, "router"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    platform = await start_platform(tmp_path / "platform", make_bus=nats_buses(nats_server.url))
    try:
        await platform.add_cell("cell-a")
        await platform.wait_for_cells(1)
        async with httpx.AsyncClient(timeout=5) as http:

            async def healthy() -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{status}/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, within=30)
            space = await platform.space()
            app = await platform.app_with_droplet(space, "procrouted")
            await platform.map_route(app["guid"], space, "procrouted")
            await platform.post(f"/v3/apps/{app['guid']}/actions/start")
            await platform.wait_running(app["guid"], 1)

            async def answers() -> bool:
                response = await http.get(
                    f"http://127.0.0.1:{port}/", headers={"Host": "procrouted.apps.localhost"}
                )
                return response.status_code == 200

            await eventually(answers, within=15)
            metrics = (await http.get(f"http://127.0.0.1:{status}/metrics")).text
            assert "overcast_router_endpoints 1.0" in metrics
    finally:
        await platform.close()
        router.send_signal(signal.SIGTERM)
        code = router.wait(timeout=20)
    assert code == 0, log_path.read_text()
    access_log = tmp_path / "router-data" / "router" / "access.log"
    deadline = time.monotonic() + 5
    while not access_log.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "procrouted.apps.localhost" in access_log.read_text()

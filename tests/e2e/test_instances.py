"""Running instances on the micro cloud's own cell, seen and driven through the CLI: `app`,
`logs --recent`, `cells`, `cell disable|enable`, `restart-instance`."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from overcast.client.client import OvercastClient
from overcast.testing.droplets import build_droplet
from overcast.testing.micro import MicroCloud
from tests.e2e.conftest import Cli
from tests.e2e.test_cli import make_space, row_of, unique, value_of


def _wait_for(check: object, seconds: float = 60.0) -> str:
    """Run `check()` (returns output or None) until it returns output."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()  # type: ignore[operator]
        if result:
            return str(result)
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def _address(row: list[str]) -> str:
    return next(cell for cell in row if cell.count(":") == 1 and "." in cell)


def _instance_rows(output: str) -> list[list[str]]:
    rows = [line.split() for line in output.splitlines()]
    return [row for row in rows if row and row[0][:1] == "#" and row[0][1:].isdigit()]


def test_instances_logs_and_cells_through_the_cli(admin: Cli, tmp_path: Path) -> None:
    make_space(admin)
    app = unique("app")
    admin.ok("create-app", app)
    admin.ok("scale", app, "-i", "2")
    assert "Assign a droplet" in admin.fails("start", app)
    droplet = build_droplet(tmp_path / "hello.tgz")
    assert "is now the current droplet" in admin.ok("set-droplet", app, str(droplet.path))
    admin.ok("start", app)

    def both_running() -> str | None:
        shown = admin.ok("app", app)
        rows = _instance_rows(shown)
        return shown if [row[1] for row in rows] == ["running", "running"] else None

    shown = _wait_for(both_running)
    assert value_of(shown, "instances") == "2/2"
    address = _address(_instance_rows(shown)[0])
    with urllib.request.urlopen(f"http://{address}/", timeout=5) as response:
        assert response.status == 200

    def has_app_lines() -> str | None:
        logs = admin.ok("logs", app, "--recent")
        return logs if "[APP/PROC/WEB/0]" in logs and "[CELL]" in logs else None

    logs = _wait_for(has_app_lines)
    assert "[API]" in logs  # the controller's own line about the start

    assert row_of(admin.ok("cells"), "micro")[2] == "ENABLED"
    assert "Disabled" in admin.ok("cell", "disable", "micro")
    assert row_of(admin.ok("cells"), "micro")[2] == "DISABLED"
    admin.ok("cell", "enable", "micro")
    assert row_of(admin.ok("cells"), "micro")[2] == "ENABLED"

    before = _instance_rows(admin.ok("app", app))
    admin.ok("restart-instance", app, "1")

    def replaced() -> str | None:
        shown = admin.ok("app", app)
        rows = _instance_rows(shown)
        states = [row[1] for row in rows]
        moved = len(rows) == 2 and _address(rows[1]) != _address(before[1])
        return shown if states == ["running", "running"] and moved else None

    _wait_for(replaced)
    admin.ok("stop", app)

    def all_down() -> str | None:
        shown = admin.ok("app", app)
        rows = _instance_rows(shown)
        return shown if rows and all(row[1] == "down" for row in rows) else None

    _wait_for(all_down)
    admin.ok("delete", app, "-f")


def test_a_restarted_micro_cloud_runs_its_started_apps_again(tmp_path: Path) -> None:
    cloud = MicroCloud(tmp_path / "data")
    cloud.start()
    try:
        with OvercastClient(cloud.api_url) as client:
            client.login_password("admin", cloud.admin_password)
            org = client.create_org("again")
            space = client.create_space("dev", org["guid"])
            app = client.create_app("phoenix", space["guid"])
            droplet = client.create_droplet(app["guid"])
            built = build_droplet(tmp_path / "droplet.tgz")
            client.wait_for_job(client.upload_droplet(droplet["guid"], built.path))
            client.set_current_droplet(app["guid"], droplet["guid"])
            client.start_app(app["guid"])
            process = client.app_processes(app["guid"])[0]
            _wait_for(lambda: _running(client, process["guid"]))
        assert cloud.stop() == 0  # the micro cloud stops its instances when it exits
        cloud.start()
        with OvercastClient(cloud.api_url) as client:
            client.login_password("admin", cloud.admin_password)
            _wait_for(lambda: _running(client, process["guid"]))
    finally:
        cloud.stop()


def _running(client: OvercastClient, process_guid: str) -> str | None:
    states = [stat["state"] for stat in client.process_stats(process_guid)]
    return "yes" if states == ["RUNNING"] else None

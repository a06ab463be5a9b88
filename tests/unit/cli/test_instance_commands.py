"""`overcast app` (with instance stats), `restart-instance`, `cells`, `disable-cell` and
`enable-cell` against a fake API; the client calls they make."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from overcast.cli import instance_commands
from overcast.cli.instance_commands import format_bytes, format_duration, stat_row
from overcast.client.resources import InstanceStats
from tests.unit.cli.fake_server import (
    FakeApi,
    app_resource,
    cf_error,
    fake_api,
    page,
    process_resource,
    run,
    with_app,
)

__all__ = ["fake_api"]  # the fixture, used by name

GIB = 1024**3


def stat(index: int, state: str = "RUNNING", **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": "web",
        "index": index,
        "state": state,
        "host": "127.0.0.1",
        "instance_ports": [{"external": 61001 + index, "internal": 61001 + index}],
        "uptime": 75,
        "usage": {"time": "2026-01-01T00:00:00Z", "cpu": 0.0123, "mem": 12345678, "disk": 4096},
        "mem_quota": 268435456,
        "disk_quota": GIB,
        "fds_quota": 16384,
        "isolation_segment": None,
        "details": None,
        "instance_guid": f"instance-{index}",
        "cell_id": "cell-1",
    }
    base.update(extra)
    return base


def cell(cell_id: str = "cell-1", state: str = "ENABLED") -> dict[str, object]:
    return {
        "guid": cell_id,
        "zone": "z1",
        "state": state,
        "host": "10.0.0.5",
        "stacks": ["overcast-linux"],
        "tags": ["ssd"],
        "capacity": {"memory_in_mb": 8192, "disk_in_mb": 102400, "instances": 256},
        "allocated": {"memory_in_mb": 512, "disk_in_mb": 2048, "instances": 2},
        "instances": 2,
        "last_heartbeat_at": "2026-01-01T00:00:05Z",
        "started_at": "2026-01-01T00:00:00Z",
        "links": {"self": {"href": f"http://api.test/v3/x/cells/{cell_id}"}},
    }


def lines_of(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()]


def row(output: str, first: str) -> list[str]:
    for cells in lines_of(output):
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{output}")


def value(output: str, key: str) -> str:
    for line in output.splitlines():
        if line.startswith(f"{key}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {key!r} in:\n{output}")


# --- formatting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (None, "-"),
        (0, "0B"),
        (512, "512B"),
        (4096, "4K"),
        (12345678, "11.8M"),
        (268435456, "256M"),
        (GIB, "1G"),
        (1536 * 1024**2, "1.5G"),
        (3 * 1024**5, "3072T"),
    ],
)
def test_format_bytes(count: int | None, text: str) -> None:
    assert format_bytes(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (12.7, "12s"), (75, "1m15s"), (3725, "1h02m"), (90000, "1d01h"), (-5, "0s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_stat_rows_for_running_down_and_crashed_instances() -> None:
    running = stat_row(InstanceStats(**stat(0)))  # type: ignore[typeddict-item]
    assert running == (
        "#0",
        "running",
        "1m15s",
        "1.2%",
        "11.8M of 256M",
        "4K of 1G",
        "127.0.0.1:61001",
        "",
    )
    down = stat_row(
        InstanceStats(**stat(1, "DOWN", usage={}, instance_ports=[], uptime=0))  # type: ignore[typeddict-item]
    )
    assert down[:4] == ("#1", "down", "-", "-")
    assert down[4:7] == ("- of 256M", "- of 1G", "-")
    crashed = stat_row(
        InstanceStats(**stat(2, "CRASHED", details="exited with status 1"))  # type: ignore[typeddict-item]
    )
    assert (crashed[1], crashed[2], crashed[-1]) == ("crashed", "-", "exited with status 1")


# --- app -------------------------------------------------------------------------------------


def test_app_shows_the_droplet_and_every_instance(fake_api: FakeApi) -> None:
    with_app(fake_api)
    fake_api.on(
        "GET",
        "/v3/apps/app-guid/droplets/current",
        {"guid": "droplet-guid", "state": "STAGED", "stack": "overcast-linux", "links": {}},
    )
    fake_api.on(
        "GET",
        "/v3/apps/app-guid/processes",
        page([process_resource("worker", "worker-guid", 1), process_resource()]),
    )
    fake_api.on(
        "GET",
        "/v3/processes/process-guid/stats",
        {"resources": [stat(0), stat(1, "CRASHED", details="exited with status 1", usage={})]},
    )
    fake_api.on(
        "GET",
        "/v3/processes/worker-guid/stats",
        {"resources": [stat(0, "STARTING", type="worker", uptime=0)]},
    )
    result = run("app", "web")
    assert result.exit_code == 0, result.output
    out = result.output
    assert value(out, "name") == "web"
    assert value(out, "state") == "STARTED"
    assert value(out, "org / space") == "acme / dev"
    assert value(out, "stack") == "overcast-linux"
    assert value(out, "droplet") == "droplet-guid (STAGED)"
    assert value(out, "buildpacks") == "python"
    # web first, then the others by type.
    types = [line.split()[1] for line in out.splitlines() if line.startswith("type:")]
    assert types == ["web", "worker"]
    assert value(out, "instances") == "1/2"
    assert row(out, "#0")[1:] == [
        "running",
        "1m15s",
        "1.2%",
        "11.8M",
        "of",
        "256M",
        "4K",
        "of",
        "1G",
        "127.0.0.1:61001",
    ]
    crashed = row(out, "#1")
    assert crashed[1] == "crashed" and " ".join(crashed[-4:]) == "exited with status 1"
    assert "starting" in out


def test_app_without_droplet_or_instances(fake_api: FakeApi) -> None:
    with_app(fake_api, app_resource(state="STOPPED"))
    fake_api.on("GET", "/v3/apps/app-guid/processes", page([process_resource(instances=0)]))
    fake_api.on("GET", "/v3/processes/process-guid/stats", {"resources": []})
    result = run("app", "web")
    assert result.exit_code == 0, result.output
    assert value(result.output, "droplet") == "none"
    assert value(result.output, "instances") == "0/0"
    assert "There are no running instances of this process." in result.output


def test_app_shows_its_routes(fake_api: FakeApi) -> None:
    with_app(fake_api, app_resource(state="STOPPED"))
    fake_api.on(
        "GET",
        "/v3/apps/app-guid/routes",
        page(
            [{"guid": "r2", "url": "web.example.com/api"}, {"guid": "r1", "url": "web.example.com"}]
        ),
    )
    fake_api.on("GET", "/v3/apps/app-guid/processes", page([process_resource(instances=0)]))
    fake_api.on("GET", "/v3/processes/process-guid/stats", {"resources": []})
    result = run("app", "web")
    assert result.exit_code == 0, result.output
    assert value(result.output, "routes") == "web.example.com, web.example.com/api"


def test_app_still_shows_when_stats_are_unavailable(fake_api: FakeApi) -> None:
    with_app(fake_api)
    fake_api.on("GET", "/v3/apps/app-guid/processes", page([process_resource()]))
    fake_api.on(
        "GET",
        "/v3/processes/process-guid/stats",
        cf_error(503, 10015, "CF-ServiceUnavailable", "No cell has reported yet"),
    )
    result = run("app", "web")
    assert result.exit_code == 0, result.output
    assert "instances unavailable: No cell has reported yet" in result.output


def test_app_not_found_exits_1(fake_api: FakeApi) -> None:
    with_app(fake_api)
    result = run("app", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == "App 'nope' not found in space 'dev'"


# --- restart-instance ------------------------------------------------------------------------


def test_restart_instance(fake_api: FakeApi) -> None:
    with_app(fake_api)
    fake_api.on(
        "GET",
        "/v3/apps/app-guid/processes",
        page([process_resource(), process_resource("worker", "worker-guid", 3)]),
    )
    fake_api.on("DELETE", "/v3/processes/process-guid/instances/1", httpx.Response(204))
    fake_api.on("DELETE", "/v3/processes/worker-guid/instances/2", httpx.Response(204))
    result = run("restart-instance", "web", "1")
    assert result.exit_code == 0, result.output
    assert "Restarting instance 1 of process web of app web." in result.output
    result = run("restart-instance", "web", "2", "--process", "worker")
    assert result.exit_code == 0, result.output
    assert fake_api.paths("DELETE") == [
        "/v3/processes/process-guid/instances/1",
        "/v3/processes/worker-guid/instances/2",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("web", "2"), "App 'web' process 'web' has 2 instance(s): index 2 does not exist"),
        (("web", "0", "--process", "db"), "App 'web' has no process 'db'"),
        (("other", "0"), "App 'other' not found in space 'dev'"),
    ],
)
def test_restart_instance_errors(fake_api: FakeApi, args: tuple[str, ...], message: str) -> None:
    with_app(fake_api)
    fake_api.on("GET", "/v3/apps/app-guid/processes", page([process_resource()]))
    result = run("restart-instance", *args)
    assert result.exit_code == 1
    assert result.stderr.strip() == message
    assert fake_api.paths("DELETE") == []


def test_restart_instance_reports_the_api_error(fake_api: FakeApi) -> None:
    with_app(fake_api)
    fake_api.on("GET", "/v3/apps/app-guid/processes", page([process_resource()]))
    fake_api.on(
        "DELETE",
        "/v3/processes/process-guid/instances/0",
        cf_error(403, 10003, "CF-NotAuthorized", "You are not authorized"),
    )
    result = run("restart-instance", "web", "0")
    assert result.exit_code == 1
    assert result.stderr.strip() == "You are not authorized"


def test_restart_instance_refuses_a_negative_index(fake_api: FakeApi) -> None:
    result = run("restart-instance", "web", "-1")
    assert result.exit_code != 0
    assert fake_api.requests == []


# --- cells -----------------------------------------------------------------------------------


def test_cells_table(fake_api: FakeApi) -> None:
    fake_api.on("GET", "/v3/x/cells", page([cell("cell-2", "DISABLED"), cell("cell-1")]))
    result = run("cells")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.index("cell-1") < out.index("cell-2")
    assert row(out, "cell-1") == [
        "cell-1",
        "z1",
        "ENABLED",
        "10.0.0.5",
        "2",
        "512M",
        "/",
        "8G",
        "2G",
        "/",
        "100G",
        "2",
        "/",
        "256",
        "ssd",
        "2026-01-01T00:00:05Z",
    ]
    assert row(out, "cell-2")[2] == "DISABLED"


def test_no_cells(fake_api: FakeApi) -> None:
    fake_api.on("GET", "/v3/x/cells", page([]))
    result = run("cells")
    assert result.exit_code == 0
    assert "No cells have reported in." in result.output


def test_cells_needs_an_admin(fake_api: FakeApi) -> None:
    fake_api.on(
        "GET",
        "/v3/x/cells",
        cf_error(403, 10003, "CF-NotAuthorized", "You are not authorized to perform the action"),
    )
    result = run("cells")
    assert result.exit_code == 1
    assert result.stderr.strip() == "You are not authorized to perform the action"


@pytest.mark.parametrize(
    ("command", "state", "done"),
    [("disable-cell", "DISABLED", "Disabled"), ("enable-cell", "ENABLED", "Enabled")],
)
def test_disable_and_enable_a_cell(fake_api: FakeApi, command: str, state: str, done: str) -> None:
    def patch(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(200, json=cell("cell-1", body["state"]))

    fake_api.on("PATCH", "/v3/x/cells/cell-1", patch)
    result = run(command, "cell-1")
    assert result.exit_code == 0, result.output
    assert f"{done} cell cell-1: state {state}." in result.output
    (request,) = fake_api.requests
    assert json.loads(request.content) == {"state": state}


def test_an_unknown_cell_exits_1(fake_api: FakeApi) -> None:
    fake_api.on(
        "PATCH",
        "/v3/x/cells/nope/..",  # the decoded path
        cf_error(404, 10010, "CF-ResourceNotFound", "Cell not found"),
    )
    result = run("disable-cell", "nope/..")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Cell not found"
    # The id is one path segment, whatever it holds.
    assert fake_api.requests[0].url.raw_path == b"/v3/x/cells/nope%2F.."


def test_app_shows_the_buildpacks_that_staged_its_droplet() -> None:
    droplet: Any = {"buildpacks": [{"name": "python", "version": "1.0.0"}, {"name": "x"}]}
    assert instance_commands._buildpacks(droplet, ["ignored"]) == "python 1.0.0, x"
    assert instance_commands._buildpacks(None, ["nodejs"]) == "nodejs"
    empty: Any = {"buildpacks": []}
    assert instance_commands._buildpacks(empty, []) == "-"

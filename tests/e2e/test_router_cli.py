"""Routes through the micro cloud's router, driven with the CLI: `map-route` sends a host to
an app's instances (round robin), `routes` lists it, `unmap-route` takes it away again."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import Cli
from tests.e2e.test_cli import make_space, unique

STDLIB = Path(__file__).resolve().parents[2] / "examples" / "stdlib"
DOMAIN = "apps.localhost"
WAIT_SECONDS = 60.0


def _get(router_url: str, host: str) -> tuple[int, bytes]:
    response = httpx.get(router_url + "/", headers={"Host": host}, timeout=5)
    return response.status_code, response.content


def _until(router_url: str, host: str, status: int) -> bytes:
    deadline = time.monotonic() + WAIT_SECONDS
    last: tuple[int, bytes] = (0, b"")
    while time.monotonic() < deadline:
        last = _get(router_url, host)
        if last[0] == status:
            return last[1]
        time.sleep(0.2)
    raise AssertionError(f"{host} never answered {status}; last {last}")


def test_map_route_start_and_unmap(admin: Cli) -> None:
    make_space(admin)
    app = unique("routed")
    host = f"{app}.{DOMAIN}"
    router = admin.cloud.router_url  # type: ignore[attr-defined]
    admin.ok("create-app", app)
    admin.ok("stage", app, str(STDLIB))
    admin.ok("scale", app, "-i", "2")
    mapped = admin.ok("map-route", app, DOMAIN, "--hostname", app)
    assert host in mapped
    assert _get(router, host)[0] in (404, 503)  # mapped, but nothing runs yet
    admin.ok("start", app)
    _until(router, host, 200)
    indices = {json.loads(_get(router, host)[1])["index"] for _ in range(10)}
    assert indices == {"0", "1"}
    listed = admin.ok("routes")
    assert app in listed and DOMAIN in listed
    admin.ok("unmap-route", app, DOMAIN, "--hostname", app)
    body = _until(router, host, 404)
    assert b"does not exist" in body
    admin.ok("delete", app, "-f")

"""`overcast push` against a real micro cloud: every example pushed and answering through the
router (single apps, a two-app manifest with variables, a worker with no route), re-pushes, the
failures a user meets (a bad manifest, an empty directory, nothing to detect, an app that exits
at once) with the previous version still serving, create-app-manifest and env."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Cli, CliResult
from tests.e2e.test_cli import make_space, unique, value_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DOMAIN = "apps.localhost"


def _get(cli: Cli, host: str, path: str = "/") -> tuple[int, bytes]:
    response = httpx.get(cli.cloud.router_url + path, headers={"Host": host}, timeout=10)
    return response.status_code, response.content


def _answers(cli: Cli, host: str, path: str = "/", within: float = 10.0) -> bytes:
    """The body of the first 200 from host/path through the router."""
    deadline = time.monotonic() + within
    status, body = 0, b""
    while time.monotonic() < deadline:
        status, body = _get(cli, host, path)
        if status == 200:
            return body
        time.sleep(0.1)
    raise AssertionError(f"{host}{path} answered {status}: {body[:300]!r}")


def _json(cli: Cli, host: str, path: str = "/") -> dict[str, Any]:
    return dict(json.loads(_answers(cli, host, path)))


def _push_fails(cli: Cli, *args: str) -> CliResult:
    result = cli.run("push", *args)
    assert result.code == 1, f"expected exit 1: {result}"
    assert "Traceback" not in result.stdout + result.stderr, result
    return result


@pytest.fixture(scope="module")
def pusher(admin: Cli) -> Cli:
    make_space(admin)
    return admin


def test_push_stdlib_then_push_again_unchanged(pusher: Cli) -> None:
    app = unique("hello")
    out = pusher.ok("push", app, "-p", str(EXAMPLES / "stdlib"))
    assert value_of(out, "routes") == f"{app}.{DOMAIN}"
    assert value_of(out, "requested state") == "started"
    assert value_of(out, "instances") == "1/1"
    assert "-----> Python app detected" in out  # the staging log streamed
    assert _json(pusher, f"{app}.{DOMAIN}")["app"] == "stdlib"

    again = pusher.ok("push", app, "-p", str(EXAMPLES / "stdlib"))
    assert "3 files unchanged, 0 uploaded" in again
    assert "(no staging)" in again  # nothing changed: the droplet is kept
    assert _json(pusher, f"{app}.{DOMAIN}")["app"] == "stdlib"


@pytest.mark.parametrize(
    ("example", "expect"),
    [("flask", b"flask"), ("node", b"node"), ("static", b"<html")],
)
def test_push_each_example(pusher: Cli, example: str, expect: bytes) -> None:
    app = unique(example)
    out = pusher.ok("push", app, "-p", str(EXAMPLES / example))
    assert value_of(out, "instances") == "1/1", out
    assert expect in _answers(pusher, f"{app}.{DOMAIN}").lower()


def test_push_a_manifest_of_two_apps_with_variables(pusher: Cli) -> None:
    prefix = unique("demo")
    out = pusher.ok(
        "push",
        "-f",
        str(EXAMPLES / "multi" / "manifest.yml"),
        "--var",
        f"prefix={prefix}",
        "--vars-file",
        str(EXAMPLES / "multi" / "vars.yml"),
    )
    assert f"name:             {prefix}-site" in out and f"{prefix}-api" in out
    assert b"<html" in _answers(pusher, f"{prefix}-site.{DOMAIN}").lower()
    api = _json(pusher, f"{prefix}-api.{DOMAIN}")
    assert api["greeting"] == "hello from a vars file"
    # The longest path prefix wins: /api of the site's host goes to the api app.
    assert _json(pusher, f"{prefix}-site.{DOMAIN}", "/api")["app"] == "stdlib"
    indices = {_json(pusher, f"{prefix}-api.{DOMAIN}")["index"] for _ in range(12)}
    assert indices == {"0", "1"}


def test_push_a_worker_with_no_route(pusher: Cli) -> None:
    app = unique("worker")
    out = pusher.ok("push", app, "-f", str(EXAMPLES / "worker" / "manifest.yml"))
    assert value_of(out, "routes") == "(none)"
    assert "worker" in out and "1/1" in out
    deadline = time.monotonic() + 20
    logs = ""
    while time.monotonic() < deadline and "worker tick" not in logs:
        logs = pusher.ok("logs", app, "--recent")
        time.sleep(0.5)
    assert "worker tick" in logs
    assert _get(pusher, f"{app}.{DOMAIN}")[0] == 404


def test_a_bad_manifest_creates_nothing(pusher: Cli, tmp_path: Path) -> None:
    app = unique("bad")
    shutil.copytree(EXAMPLES / "stdlib", tmp_path / "src")
    manifest = tmp_path / "src" / "manifest.yml"
    manifest.write_text(
        f"applications:\n- name: {app}\n  memroy: 12Q\n  instances: two\n"
        "  env:\n    K: ((missing))\n"
    )
    result = _push_fails(pusher, "-p", str(tmp_path / "src"))
    message = result.stderr
    assert "line 3" in message and "memroy" in message and "memory" in message
    assert "line 4" in message and "instances" in message
    assert "missing" in message
    assert app not in pusher.ok("apps")

    manifest.write_text(f"applications:\n- name: {app}\n- name: {app}\n")
    assert "line" in _push_fails(pusher, "-p", str(tmp_path / "src")).stderr
    assert app not in pusher.ok("apps")


def test_an_empty_directory_is_refused(pusher: Cli, tmp_path: Path) -> None:
    result = _push_fails(pusher, unique("empty"), "-p", str(tmp_path))
    assert "no files to push" in result.stderr


def test_a_failed_staging_leaves_the_previous_version_serving(pusher: Cli, tmp_path: Path) -> None:
    app = unique("keeps")
    pusher.ok("push", app, "-p", str(EXAMPLES / "stdlib"))
    _answers(pusher, f"{app}.{DOMAIN}")
    (tmp_path / "notes.txt").write_text("nothing any buildpack knows\n")
    result = _push_fails(pusher, app, "-p", str(tmp_path))
    assert "Staging app" in result.stderr and "NoAppDetectedError" in result.stderr
    assert _json(pusher, f"{app}.{DOMAIN}")["app"] == "stdlib"  # the old droplet still runs


def test_an_app_that_exits_at_once_fails_the_push(pusher: Cli) -> None:
    app = unique("exits")
    result = _push_fails(
        pusher, app, "-p", str(EXAMPLES / "stdlib"), "-c", "echo giving up; exit 3"
    )
    assert f"App {app} failed to start" in result.stderr and "crashed" in result.stderr
    assert "giving up" in result.stderr  # the app's last lines show why


def test_create_app_manifest_and_push_it_back(pusher: Cli, tmp_path: Path) -> None:
    app = unique("copy")
    pusher.ok("push", app, "-p", str(EXAMPLES / "stdlib"), "-i", "2", "-m", "128M")
    target = tmp_path / "manifest.yml"
    pusher.ok("create-app-manifest", app, "-p", str(target))
    text = target.read_text()
    assert f"name: {app}" in text and "instances: 2" in text and "memory: 128M" in text
    out = pusher.ok("push", "-f", str(target), "-p", str(EXAMPLES / "stdlib"))
    assert value_of(out, "instances") == "2/2"


def test_env_shows_vcap_application_and_masks_secrets(pusher: Cli, tmp_path: Path) -> None:
    app = unique("env")
    manifest = tmp_path / "manifest.yml"
    manifest.write_text(
        f"applications:\n- name: {app}\n  env:\n    API_TOKEN: hunter2-secret\n    MODE: demo\n"
    )
    pusher.ok("push", "-f", str(manifest), "-p", str(EXAMPLES / "stdlib"), "--no-start")
    shown = pusher.ok("env", app)
    assert "VCAP_APPLICATION" in shown and "MODE: demo" in shown
    assert "hunter2-secret" not in shown and "[hidden]" in shown
    assert "hunter2-secret" in pusher.ok("env", app, "--reveal")

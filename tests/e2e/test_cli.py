"""The CLI against a real micro cloud: the whole developer flow, and how failures look."""

from __future__ import annotations

import json
import socket
import stat
import tempfile
import uuid
from pathlib import Path

from overcast.client.client import OvercastClient
from overcast.testing.droplets import build_droplet
from tests.e2e.conftest import Cli, MicroCloud

SECRET_VALUE = "hunter2-very-secret"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def row_of(output: str, first_cell: str) -> list[str]:
    """The cells of the table row starting with `first_cell`."""
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{output}")


def value_of(output: str, key: str) -> str:
    """The value of a `key:  value` line."""
    for line in output.splitlines():
        if line.startswith(f"{key}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {key!r} line in:\n{output}")


def give_droplet(cli: Cli, org: str, space: str, app: str) -> None:
    """Staging is not a CLI command yet: upload the test droplet through the client library
    and make it the app's current droplet, so the app can start."""
    with OvercastClient(cli.cloud.api_url) as client, tempfile.TemporaryDirectory() as scratch:
        client.login_password("admin", cli.cloud.admin_password)
        found_org = client.org_by_name(org)
        assert found_org is not None
        found_space = client.space_by_name(found_org["guid"], space)
        assert found_space is not None
        found_app = client.app_by_name(found_space["guid"], app)
        assert found_app is not None
        droplet = client.create_droplet(found_app["guid"])
        built = build_droplet(Path(scratch) / "droplet.tgz")
        client.wait_for_job(client.upload_droplet(droplet["guid"], built.path))
        staged = client.get_droplet(droplet["guid"])
        assert staged["state"] == "STAGED"
        assert staged.get("checksum") == {"type": "sha256", "value": built.sha256}
        listed = client.app_droplets(found_app["guid"], states=["STAGED"])
        assert [d["guid"] for d in listed] == [droplet["guid"]]
        assigned = client.set_current_droplet(found_app["guid"], droplet["guid"])
        assert assigned["data"] == {"guid": droplet["guid"]}
        current = client.current_droplet(found_app["guid"])
        assert current is not None and current["guid"] == droplet["guid"]


def saved_config(cli: Cli) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(cli.config_path.read_text())
    return loaded


def make_space(admin: Cli) -> tuple[str, str]:
    org, space = unique("org"), unique("space")
    admin.ok("create-org", org)
    admin.ok("create-space", space, "-o", org)
    admin.ok("target", "-o", org, "-s", space)
    return org, space


# -- login ---------------------------------------------------------------------------------


def test_login_with_password_option_then_with_prompt(new_cli: Cli, micro_cloud: MicroCloud) -> None:
    out = new_cli.login("admin", micro_cloud.admin_password)
    assert f"Logged in to {micro_cloud.api_url} as admin." in out
    assert stat.S_IMODE(new_cli.config_path.stat().st_mode) == 0o600
    config = saved_config(new_cli)
    assert config["target"] == micro_cloud.api_url
    assert config["access_token"] and config["refresh_token"]
    assert str(config["access_token"]) not in out

    assert "Logged out." in new_cli.ok("logout")
    assert saved_config(new_cli)["access_token"] is None
    assert "Not logged in" in new_cli.fails("orgs")

    # -a falls back to the saved target; the password comes from the (piped) prompt.
    out = new_cli.ok("login", "-u", "admin", input=micro_cloud.admin_password + "\n")
    assert "Logged in" in out
    assert micro_cloud.admin_password not in out
    assert stat.S_IMODE(new_cli.config_path.stat().st_mode) == 0o600
    new_cli.ok("orgs")


def test_wrong_password_is_refused_clearly(new_cli: Cli, micro_cloud: MicroCloud) -> None:
    message = new_cli.fails("login", "-a", micro_cloud.api_url, "-u", "admin", "-p", "wrong")
    assert message == "Login failed: Bad credentials"
    assert not new_cli.config_path.exists()


def test_commands_need_a_login(new_cli: Cli) -> None:
    assert new_cli.fails("apps") == "Not logged in. Run: overcast login -a URL -u USER"
    assert new_cli.fails("target").startswith("Not logged in.")


def test_an_unreachable_api_is_reported(new_cli: Cli) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket is closed
    message = new_cli.fails("login", "-a", f"http://127.0.0.1:{port}", "-u", "a", "-p", "b")
    assert message.startswith(f"cannot reach API at http://127.0.0.1:{port}")


def test_an_expired_access_token_is_refreshed_and_saved(
    new_cli: Cli, micro_cloud: MicroCloud
) -> None:
    admin = new_cli  # a session of its own: this test ruins its tokens at the end
    admin.login("admin", micro_cloud.admin_password)
    config = saved_config(admin)
    config["access_token"] = "not-a-valid-token"
    admin.config_path.write_text(json.dumps(config))

    admin.ok("orgs")

    refreshed = saved_config(admin)
    assert refreshed["access_token"] not in (None, "not-a-valid-token")
    assert refreshed["refresh_token"] == config["refresh_token"]
    assert stat.S_IMODE(admin.config_path.stat().st_mode) == 0o600

    refreshed["access_token"] = refreshed["refresh_token"] = "garbage"
    admin.config_path.write_text(json.dumps(refreshed))
    assert "session has expired" in admin.fails("orgs")


# -- the developer flow ------------------------------------------------------------------------


def test_org_space_app_lifecycle(admin: Cli) -> None:
    org, space, app = unique("org"), unique("space"), unique("app")
    assert f"Created org {org}" in admin.ok("create-org", org)
    assert org in admin.ok("orgs")
    admin.ok("target", "-o", org)
    admin.ok("create-space", space)
    assert space in admin.ok("spaces")
    target = admin.ok("target", "-o", org, "-s", space)
    assert (value_of(target, "Org"), value_of(target, "Space")) == (org, space)

    admin.ok("create-app", app)
    assert row_of(admin.ok("apps"), app)[1:] == ["STOPPED", "web", "1", "256M", "1G"]

    out = admin.ok("scale", app, "-i", "3", "-m", "512M")
    assert "3 instances, 512M memory" in out
    assert row_of(admin.ok("apps"), app)[1:] == ["STOPPED", "web", "3", "512M", "1G"]
    shown = admin.ok("app", app)
    assert value_of(shown, "name") == app
    assert value_of(shown, "state") == "STOPPED"
    assert value_of(shown, "org / space") == f"{org} / {space}"
    assert value_of(shown, "type") == "web"
    assert value_of(shown, "instances") == "0/3"
    assert value_of(shown, "memory / disk") == "512M / 1G"

    _check_environment(admin, app)

    give_droplet(admin, org, space, app)
    assert "state STARTED" in admin.ok("start", app)
    assert value_of(admin.ok("app", app), "state") == "STARTED"
    assert "state STOPPED" in admin.ok("stop", app)
    assert value_of(admin.ok("app", app), "state") == "STOPPED"
    assert "state STARTED" in admin.ok("restart", app)
    assert value_of(admin.ok("app", app), "state") == "STARTED"

    events = admin.ok("events", app)
    for event in (
        "audit.app.create",
        "audit.app.process.scale",
        "audit.app.update",
        "audit.app.start",
        "audit.app.stop",
        "audit.app.restart",
    ):
        assert event in events
    assert "DB_PASSWORD" in events
    assert SECRET_VALUE not in events
    assert "audit.space.create" in admin.ok("events")

    assert f"Deleted app {app}." in admin.ok("delete", app, "-f")
    assert admin.fails("app", app) == f"App '{app}' not found in space '{space}'"
    assert app not in admin.ok("apps")

    admin.ok("delete-space", space, "-f")
    assert value_of(admin.ok("target"), "Space").startswith("(none")  # no longer targeted
    admin.ok("delete-org", org, "-f")
    assert org not in admin.ok("orgs")


def _check_environment(admin: Cli, app: str) -> None:
    out = admin.ok("set-env", app, "DB_PASSWORD", SECRET_VALUE)
    assert SECRET_VALUE not in out
    admin.ok("set-env", app, "GREETING", "hello")

    env = admin.ok("env", app)
    assert "DB_PASSWORD: [hidden]" in env
    assert "GREETING: hello" in env
    assert SECRET_VALUE not in env
    assert "VCAP_APPLICATION" in env
    assert f'"application_name": "{app}"' in env
    assert "--reveal" in env

    revealed = admin.ok("env", app, "--reveal")
    assert f"DB_PASSWORD: {SECRET_VALUE}" in revealed

    admin.ok("unset-env", app, "GREETING")
    env = admin.ok("env", app)
    assert "GREETING" not in env
    assert "DB_PASSWORD" in env


# -- failures ------------------------------------------------------------------------------


def test_unknown_app_and_unknown_target(admin: Cli) -> None:
    _, space = make_space(admin)
    assert admin.fails("app", "no-such-app") == f"App 'no-such-app' not found in space '{space}'"
    assert admin.fails("start", "no-such-app").startswith("App 'no-such-app' not found")
    assert admin.fails("target", "-o", "no-such-org") == "Org 'no-such-org' not found"


def test_scale_needs_a_unit_for_memory(admin: Cli) -> None:
    make_space(admin)
    app = unique("app")
    admin.ok("create-app", app)
    message = admin.fails("scale", app, "-m", "512")
    assert "needs a unit" in message
    assert "512M" in message
    assert "needs a unit" in admin.fails("scale", app, "-k", "1024")
    assert row_of(admin.ok("apps"), app)[3:5] == ["1", "256M"]


def test_no_target_is_explained(admin: Cli) -> None:
    org = unique("org")
    admin.ok("create-org", org)
    admin.ok("target", "-o", org)  # no spaces: none targeted
    assert admin.fails("apps") == "No space targeted. Run: overcast target -s SPACE"


def test_a_space_developer_sees_only_their_org_and_cannot_create_orgs(
    admin: Cli, new_cli: Cli
) -> None:
    org, space = make_space(admin)
    other_org = unique("other")
    admin.ok("create-org", other_org)
    user, password = unique("dev"), "dev-password-1"
    admin.ok("create-user", user, input=password + "\n")
    out = admin.ok("set-space-role", user, org, space, "SpaceDeveloper")
    assert "SpaceDeveloper" in out

    out = new_cli.login(user, password)
    assert value_of(out, "Org") == org  # the only org and space are targeted at login
    assert value_of(out, "Space") == space
    orgs = new_cli.ok("orgs")
    assert org in orgs
    assert other_org not in orgs
    assert new_cli.fails("target", "-o", other_org) == f"Org '{other_org}' not found"
    message = new_cli.fails("create-org", unique("mine"))
    assert message == "You are not authorized to perform the requested action"

    app = unique("app")
    new_cli.ok("create-app", app)
    assert app in new_cli.ok("apps")
    assert "not authorized" in new_cli.fails("jobs")

    admin.ok("unset-space-role", user, org, space, "space_developer")
    assert "does not have SpaceDeveloper" in admin.fails(
        "unset-space-role", user, org, space, "SpaceDeveloper"
    )


def test_operators_see_jobs_and_queues(admin: Cli) -> None:
    make_space(admin)
    app = unique("app")
    admin.ok("create-app", app)
    admin.ok("delete", app, "-f")
    jobs = admin.ok("jobs")
    assert "app.delete" in jobs
    assert "COMPLETE" in jobs
    assert "delete app" in jobs  # a stage
    assert row_of(admin.ok("queues"), "deletes")[0] == "deletes"

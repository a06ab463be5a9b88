"""`create-client`, `clients` and `delete-client` against a real micro cloud: the secret a
client is made with logs in with the client_credentials grant, is shown once (when
generated) and is written to no log; non-admins and unknown scopes are refused."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from overcast.client import OAuthError, OvercastClient
from overcast.testing.micro import MicroCloud
from tests.e2e.conftest import Cli

ADMIN_SCOPE = "cloud_controller.admin"
STORE_IT = "Client secret (store it now, it is not shown again):"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def client_login(cloud: MicroCloud, client_id: str, secret: str) -> list[str]:
    """POST /oauth/token (grant_type=client_credentials, HTTP Basic client_id:secret), then
    an admin-only call with the token: the names of the cells."""
    with OvercastClient(cloud.api_url) as client:
        tokens = client.login_client(client_id, secret)
        assert tokens.refresh_token is None
        return [cell["guid"] for cell in client.list_cells()]


def files_under(home: Path) -> str:
    return "".join(path.read_text(errors="replace") for path in home.rglob("*") if path.is_file())


def test_a_generated_secret_is_shown_once_and_logs_in(admin: Cli, micro_cloud: MicroCloud) -> None:
    name = unique("health")
    result = admin.run("create-client", name, "--authority", ADMIN_SCOPE)
    assert result.code == 0, result
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"Created client {name} with authorities {ADMIN_SCOPE}.", STORE_IT]
    secret = lines[2]
    assert len(lines) == 3 and len(secret) >= 40
    assert result.stdout.count(secret) == 1
    assert result.stderr == ""

    assert client_login(micro_cloud, name, secret)  # the micro cloud has a cell

    listed = admin.ok("clients")
    row = next(line.split() for line in listed.splitlines() if line.startswith(name))
    assert row[1:3] == [ADMIN_SCOPE, "client_credentials"]
    assert secret not in listed
    server_log = micro_cloud.log_text()
    assert "/v3/x/clients" in server_log and "/oauth/token" in server_log  # requests logged
    assert secret not in server_log
    assert secret not in files_under(admin.home)

    assert admin.ok("delete-client", name, "-f") == f"Deleted client {name}.\n"
    assert name not in admin.ok("clients")
    with pytest.raises(OAuthError, match="invalid_client"):
        client_login(micro_cloud, name, secret)
    assert admin.fails("delete-client", name, "-f") == f"Client '{name}' not found"


def test_a_secret_from_stdin(admin: Cli, micro_cloud: MicroCloud) -> None:
    name, secret = unique("ci"), f"stdin-secret-{uuid.uuid4().hex}"
    out = admin.ok(
        "create-client", name, "--secret", "-", "--authority", ADMIN_SCOPE, input=secret + "\n"
    )
    assert out == f"Created client {name} with authorities {ADMIN_SCOPE}.\n"
    assert client_login(micro_cloud, name, secret)
    assert secret not in micro_cloud.log_text()

    message = admin.fails(
        "create-client", name, "--secret", "-", "--authority", ADMIN_SCOPE, input=secret + "\n"
    )
    assert message == f"Client '{name}' already exists."
    admin.ok("delete-client", name, "-f")


def test_refusals(admin: Cli, new_cli: Cli) -> None:
    name = unique("bot")
    message = admin.fails("create-client", name, "--authority", "cloud_controller.root")
    assert message == "Unknown authorities: cloud_controller.root"
    assert admin.fails("create-client", name).startswith("Give at least one --authority")
    short = admin.fails("create-client", name, "--secret", "short", "--authority", ADMIN_SCOPE)
    assert short == "Client secret must be at least 16 characters"
    assert name not in admin.ok("clients")

    user, password = unique("dev"), "dev-password-1"
    admin.ok("create-user", user, input=password + "\n")
    new_cli.login(user, password)
    refused = "You are not authorized to perform the requested action"
    assert new_cli.fails("create-client", name, "--authority", ADMIN_SCOPE) == refused
    assert new_cli.fails("clients") == refused
    assert new_cli.fails("delete-client", "anything", "-f") == refused

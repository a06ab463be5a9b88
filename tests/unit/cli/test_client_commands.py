"""OAuth clients against a fake API: the client's list/create/delete methods, and `clients`,
`create-client` and `delete-client` (what they send, what they print, how they fail, and
that a secret is shown once at most)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from overcast.cli import operator_commands
from overcast.cli.operator_commands import GRANTABLE_AUTHORITIES
from overcast.client import OvercastClient, Tokens
from overcast.controller.clients import GRANTABLE_SCOPES
from tests.unit.cli.fake_server import API, FakeApi, FakeContext, cf_error, run

ADMIN = "cloud_controller.admin"
GIVEN_SECRET = "a-secret-from-stdin-0123456789"
NOT_AUTHORIZED = "You are not authorized to perform the requested action"


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi()
    context = FakeContext(tmp_path / "home", fake)
    monkeypatch.setattr(operator_commands, "current", lambda: context)
    return fake


def client_resource(client_id: str = "health", authorities: tuple[str, ...] = (ADMIN,)) -> Any:
    return {
        "client_id": client_id,
        "created_at": "2026-01-01T00:00:00Z",
        "authorized_grant_types": ["client_credentials"],
        "authorities": list(authorities),
        "links": {"self": {"href": f"{API}/v3/x/clients/{client_id}"}},
    }


def accept_creates(api: FakeApi) -> list[dict[str, Any]]:
    """POST /v3/x/clients answers 201 like the server; returns the bodies it was sent."""
    bodies: list[dict[str, Any]] = []

    def create(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        created = client_resource(body["client_id"], tuple(dict.fromkeys(body["authorities"])))
        return httpx.Response(201, json=created)

    api.on("POST", "/v3/x/clients", create)
    return bodies


def _body(request: httpx.Request) -> Any:
    return json.loads(request.content)


# -- the client library ----------------------------------------------------------------------


def test_client_methods() -> None:
    api = FakeApi()
    bodies = accept_creates(api)
    api.on("GET", "/v3/x/clients", {"resources": [client_resource()]})
    api.on("DELETE", "/v3/x/clients/ci.bot-1", httpx.Response(204))
    transport = httpx.MockTransport(api.handle)
    with OvercastClient(API, tokens=Tokens("t"), transport=transport) as client:
        assert client.list_oauth_clients() == [client_resource()]
        created = client.create_oauth_client("ci.bot-1", GIVEN_SECRET, (ADMIN, "openid"))
        assert created["authorities"] == [ADMIN, "openid"]
        assert "client_secret" not in created
        assert bodies == [
            {
                "client_id": "ci.bot-1",
                "client_secret": GIVEN_SECRET,
                "authorities": [ADMIN, "openid"],
            }
        ]
        client.delete_oauth_client("ci.bot-1")
    assert [(r.method, r.url.path) for r in api.requests] == [
        ("GET", "/v3/x/clients"),
        ("POST", "/v3/x/clients"),
        ("DELETE", "/v3/x/clients/ci.bot-1"),
    ]
    assert all(r.headers["authorization"] == "bearer t" for r in api.requests)


def test_a_client_id_is_one_path_segment() -> None:
    api = FakeApi()
    api.on("DELETE", "/v3/x/clients/a/b", httpx.Response(204))
    transport = httpx.MockTransport(api.handle)
    with OvercastClient(API, tokens=Tokens("t"), transport=transport) as client:
        client.delete_oauth_client("a/b")
    assert api.requests[-1].url.raw_path == b"/v3/x/clients/a%2Fb"


def test_the_help_lists_what_the_server_grants() -> None:
    assert set(GRANTABLE_AUTHORITIES) == GRANTABLE_SCOPES
    assert len(GRANTABLE_AUTHORITIES) == len(GRANTABLE_SCOPES)
    result = run("create-client", "--help")
    assert result.exit_code == 0
    assert "uaa.user" in result.output and "cloud_controller.admin_read_only" in result.output


# -- clients ---------------------------------------------------------------------------------


def test_clients_lists_them(api: FakeApi) -> None:
    api.on(
        "GET",
        "/v3/x/clients",
        {
            "resources": [
                client_resource("health"),
                client_resource("reader", ("cloud_controller.read", "openid")),
            ]
        },
    )
    result = run("clients")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["client", "authorities", "grant", "types", "created"]
    assert lines[2].split() == [
        "health",
        ADMIN,
        "client_credentials",
        "2026-01-01T00:00:00Z",
    ]
    assert lines[3].split() == [
        "reader",
        "cloud_controller.read,",
        "openid",
        "client_credentials",
        "2026-01-01T00:00:00Z",
    ]


def test_clients_when_there_are_none(api: FakeApi) -> None:
    api.on("GET", "/v3/x/clients", {"resources": []})
    result = run("clients")
    assert result.exit_code == 0
    assert result.output == "No clients.\n"


def test_clients_refused_to_a_non_admin(api: FakeApi) -> None:
    api.on("GET", "/v3/x/clients", cf_error(403, 10003, "CF-NotAuthorized", NOT_AUTHORIZED))
    result = run("clients")
    assert result.exit_code == 1
    assert result.stderr == f"{NOT_AUTHORIZED}\n"
    assert result.stdout == ""


# -- create-client ---------------------------------------------------------------------------


def test_create_client_generates_a_secret_and_prints_it_once(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = accept_creates(api)
    result = run("create-client", "health", "--authority", ADMIN)
    assert result.exit_code == 0, result.output
    secret = bodies[0]["client_secret"]
    assert len(secret) >= 40
    assert bodies[0]["authorities"] == [ADMIN]
    assert result.stdout.splitlines() == [
        f"Created client health with authorities {ADMIN}.",
        "Client secret (store it now, it is not shown again):",
        secret,
    ]
    assert result.output.count(secret) == 1
    assert result.stderr == ""
    assert secret not in caplog.text
    sent = api.requests[-1]  # in the body only
    assert secret not in str(sent.url)
    assert all(secret not in value for value in sent.headers.values())

    run("create-client", "second", "--authority", ADMIN)
    assert bodies[1]["client_secret"] != secret


def test_create_client_reads_the_secret_from_stdin(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = accept_creates(api)
    result = run(
        "create-client",
        "ci",
        "--secret",
        "-",
        "--authority",
        "cloud_controller.read",
        "--authority",
        "cloud_controller.write",
        input=GIVEN_SECRET + "\n",
    )
    assert result.exit_code == 0, result.output
    assert bodies == [
        {
            "client_id": "ci",
            "client_secret": GIVEN_SECRET,
            "authorities": ["cloud_controller.read", "cloud_controller.write"],
        }
    ]
    assert result.output == (
        "Created client ci with authorities cloud_controller.read, cloud_controller.write.\n"
    )
    assert GIVEN_SECRET not in caplog.text


def test_create_client_with_a_given_secret_does_not_print_it(api: FakeApi) -> None:
    bodies = accept_creates(api)
    result = run("create-client", "ci", "--secret", GIVEN_SECRET, "--authority", ADMIN)
    assert result.exit_code == 0, result.output
    assert bodies[0]["client_secret"] == GIVEN_SECRET
    assert GIVEN_SECRET not in result.output
    assert "store it now" not in result.output


def test_create_client_needs_an_authority(api: FakeApi) -> None:
    result = run("create-client", "ci", input=GIVEN_SECRET + "\n")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Give at least one --authority (grantable: {', '.join(GRANTABLE_AUTHORITIES)})\n"
    )
    assert api.requests == []


def test_create_client_with_no_secret_on_stdin(api: FakeApi) -> None:
    result = run("create-client", "ci", "--secret", "-", "--authority", ADMIN, input="")
    assert result.exit_code == 1
    assert result.stderr == "No client secret given\n"
    assert api.paths("POST") == []


@pytest.mark.parametrize(
    ("status", "title", "detail"),
    [
        (403, "CF-NotAuthorized", NOT_AUTHORIZED),
        (422, "CF-UnprocessableEntity", "Unknown authorities: cloud_controller.root"),
        (422, "CF-UniquenessError", "Client 'health' already exists."),
        (422, "CF-UnprocessableEntity", "Client secret must be at least 16 characters"),
    ],
)
def test_create_client_failures_are_one_line(
    api: FakeApi, status: int, title: str, detail: str
) -> None:
    api.on("POST", "/v3/x/clients", cf_error(status, 10008, title, detail))
    result = run("create-client", "health", "--authority", ADMIN)
    assert result.exit_code == 1
    assert result.stderr == f"{detail}\n"
    # The secret was generated, refused with the client: it is no use, and not shown.
    assert result.stdout == ""


# -- delete-client ---------------------------------------------------------------------------


def test_delete_client(api: FakeApi) -> None:
    api.on("GET", "/v3/x/clients", {"resources": [client_resource("health")]})
    api.on("DELETE", "/v3/x/clients/health", httpx.Response(204))
    result = run("delete-client", "health", "-f")
    assert result.exit_code == 0, result.output
    assert result.output == "Deleted client health.\n"
    assert api.paths("DELETE") == ["/v3/x/clients/health"]


def test_delete_client_needs_confirmation_or_force(api: FakeApi) -> None:
    api.on("GET", "/v3/x/clients", {"resources": [client_resource("health")]})
    result = run("delete-client", "health")
    assert result.exit_code == 1
    assert result.stderr == (
        "Not deleting client 'health' without confirmation: pass -f to delete it\n"
    )
    assert api.paths("DELETE") == []


def test_delete_client_failures(api: FakeApi) -> None:
    api.on("GET", "/v3/x/clients", {"resources": [client_resource("health")]})
    result = run("delete-client", "ghost", "-f")
    assert result.exit_code == 1
    assert result.stderr == "Client 'ghost' not found\n"
    assert api.paths("DELETE") == []

    api.on("GET", "/v3/x/clients", cf_error(403, 10003, "CF-NotAuthorized", NOT_AUTHORIZED))
    result = run("delete-client", "health", "-f")
    assert result.exit_code == 1
    assert result.stderr == f"{NOT_AUTHORIZED}\n"
    assert api.paths("DELETE") == []

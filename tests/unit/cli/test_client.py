"""OvercastClient against httpx.MockTransport: discovery, tokens, refresh-and-retry-once,
error parsing, pagination and job polling, with no server."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from overcast.client import (
    ApiError,
    ApiUnreachable,
    InvalidApiUrl,
    JobFailed,
    JobTimedOut,
    OAuthError,
    OvercastClient,
    Tokens,
    UnexpectedResponse,
    normalize_api_url,
)

API = "http://api.test"
Handler = Callable[[httpx.Request], httpx.Response]


def _root() -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "links": {
                "self": {"href": f"{API}/"},
                "cloud_controller_v3": {"href": f"{API}/v3"},
                "login": {"href": "http://login.test"},
            }
        },
    )


def _cf_error(status: int, code: int, title: str, detail: str) -> httpx.Response:
    return httpx.Response(
        status, json={"errors": [{"code": code, "title": title, "detail": detail}]}
    )


def _invalid_token() -> httpx.Response:
    return _cf_error(401, 1000, "CF-InvalidAuthToken", "Invalid Auth Token")


def _page(resources: list[dict[str, Any]], next_href: str | None) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "pagination": {
                "total_results": 0,
                "total_pages": 1,
                "first": {"href": ""},
                "last": {"href": ""},
                "previous": None,
                "next": {"href": next_href} if next_href else None,
            },
            "resources": resources,
        },
    )


def _client(handler: Handler, **kwargs: Any) -> OvercastClient:
    return OvercastClient(API, transport=httpx.MockTransport(handler), **kwargs)


def _form(request: httpx.Request) -> dict[str, str]:
    return {
        key: values[0]
        for key, values in parse_qs(request.content.decode(), keep_blank_values=True).items()
    }


class TokenServer:
    """A token endpoint on the login host; records the grants it was asked for."""

    def __init__(self, *, accept_password: str = "right", refresh_ok: bool = True) -> None:
        self.grants: list[dict[str, str]] = []
        self.accept_password = accept_password
        self.refresh_ok = refresh_ok
        self.issued = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url == "http://login.test/oauth/token"
        assert request.headers["authorization"] == "Basic " + base64.b64encode(b"cf:").decode()
        form = _form(request)
        self.grants.append(form)
        if form["grant_type"] == "password" and form["password"] != self.accept_password:
            return httpx.Response(
                401, json={"error": "unauthorized", "error_description": "Bad credentials"}
            )
        if form["grant_type"] == "refresh_token" and not self.refresh_ok:
            return httpx.Response(
                401, json={"error": "invalid_token", "error_description": "Invalid refresh token"}
            )
        self.issued += 1
        body = {"access_token": f"access-{self.issued}", "token_type": "bearer"}
        if form["grant_type"] == "password":
            body["refresh_token"] = "refresh-1"
        return httpx.Response(200, json=body)


def _router(tokens: TokenServer, api: Handler) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "login.test":
            return tokens.handle(request)
        if request.url.path == "/":
            return _root()
        return api(request)

    return handle


# -- discovery and login ---------------------------------------------------------------------


def test_login_discovers_the_token_server_and_uses_the_password_grant() -> None:
    tokens = TokenServer()
    heard: list[Tokens] = []
    client = _client(_router(tokens, lambda r: httpx.Response(404)), token_listener=heard.append)

    result = client.login_password("admin", "right")

    assert result == Tokens("access-1", "refresh-1")
    assert client.tokens == result
    assert heard == [result]
    assert tokens.grants == [
        {"grant_type": "password", "username": "admin", "password": "right", "scope": ""}
    ]


def test_wrong_password_raises_oauth_error_with_error_and_description() -> None:
    client = _client(_router(TokenServer(), lambda r: httpx.Response(404)))

    with pytest.raises(OAuthError) as caught:
        client.login_password("admin", "wrong")

    error = caught.value
    assert (error.status, error.error, error.error_description) == (
        401,
        "unauthorized",
        "Bad credentials",
    )
    assert isinstance(error, ApiError)
    assert str(error) == "Bad credentials (unauthorized, HTTP 401)"
    assert client.tokens is None


def test_a_non_oauth_token_error_body_still_becomes_an_oauth_error() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return _root()
        return httpx.Response(502, text="<html>bad gateway</html>")

    with pytest.raises(OAuthError) as caught:
        _client(handle).login_password("admin", "x")
    assert caught.value.status == 502
    assert "HTTP 502" in caught.value.error_description


def test_tokens_repr_hides_the_tokens() -> None:
    assert "secret-access" not in repr(Tokens("secret-access", "secret-refresh"))
    assert "secret-refresh" not in repr(Tokens("secret-access", "secret-refresh"))


# -- refresh and retry ----------------------------------------------------------------------


def test_invalid_auth_token_is_refreshed_and_the_call_retried_once() -> None:
    tokens = TokenServer()
    seen_auth: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen_auth.append(request.headers.get("authorization", ""))
        if request.headers.get("authorization") != "bearer access-1":
            return _invalid_token()
        return _page([{"guid": "o1", "name": "one"}], None)

    heard: list[Tokens] = []
    client = _client(
        _router(tokens, api), tokens=Tokens("expired", "refresh-1"), token_listener=heard.append
    )

    orgs = client.list_orgs()

    assert [org["name"] for org in orgs] == ["one"]
    assert seen_auth == ["bearer expired", "bearer access-1"]
    assert tokens.grants == [
        {"grant_type": "refresh_token", "refresh_token": "refresh-1", "scope": ""}
    ]
    # Refresh tokens do not rotate: the old one is kept when none comes back.
    assert heard == [Tokens("access-1", "refresh-1")]


def test_a_second_invalid_token_after_refresh_is_not_retried_again() -> None:
    tokens = TokenServer()
    calls: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return _invalid_token()

    client = _client(_router(tokens, api), tokens=Tokens("expired", "refresh-1"))

    with pytest.raises(ApiError) as caught:
        client.get_app("a1")

    assert caught.value.title == "CF-InvalidAuthToken"
    assert calls == ["/v3/apps/a1", "/v3/apps/a1"]
    assert len(tokens.grants) == 1


def test_not_authenticated_is_not_retried() -> None:
    tokens = TokenServer()
    calls: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return _cf_error(401, 10002, "CF-NotAuthenticated", "Authentication error")

    client = _client(_router(tokens, api), tokens=Tokens("t", "refresh-1"))

    with pytest.raises(ApiError) as caught:
        client.list_orgs()

    assert (caught.value.status, caught.value.code, caught.value.title) == (
        401,
        10002,
        "CF-NotAuthenticated",
    )
    assert calls == ["/v3/organizations"]
    assert tokens.grants == []


def test_a_failed_refresh_raises_the_oauth_error() -> None:
    tokens = TokenServer(refresh_ok=False)
    client = _client(_router(tokens, lambda r: _invalid_token()), tokens=Tokens("expired", "stale"))

    with pytest.raises(OAuthError) as caught:
        client.list_orgs()
    assert caught.value.error == "invalid_token"


def test_without_a_refresh_token_the_invalid_token_error_is_raised() -> None:
    tokens = TokenServer()
    client = _client(_router(tokens, lambda r: _invalid_token()), tokens=Tokens("expired"))

    with pytest.raises(ApiError, match="Invalid Auth Token"):
        client.list_orgs()
    assert tokens.grants == []


# -- errors -----------------------------------------------------------------------------------


def test_api_error_exposes_title_code_detail_and_reads_well() -> None:
    client = _client(
        lambda r: _cf_error(404, 10010, "CF-ResourceNotFound", "App not found"), tokens=Tokens("t")
    )

    with pytest.raises(ApiError) as caught:
        client.get_app("missing")

    error = caught.value
    assert (error.status, error.code, error.title, error.detail) == (
        404,
        10010,
        "CF-ResourceNotFound",
        "App not found",
    )
    assert str(error) == "App not found (CF-ResourceNotFound, HTTP 404)"


def test_several_errors_are_all_in_the_message() -> None:
    body = {
        "errors": [
            {"code": 10008, "title": "CF-UnprocessableEntity", "detail": "a"},
            {"code": 10008, "title": "CF-UnprocessableEntity", "detail": "b"},
        ]
    }
    client = _client(lambda r: httpx.Response(422, json=body), tokens=Tokens("t"))

    with pytest.raises(ApiError, match=r"^a; b \(CF-UnprocessableEntity, HTTP 422\)$"):
        client.create_org("x")


def test_a_non_json_error_becomes_an_unknown_error() -> None:
    client = _client(lambda r: httpx.Response(503, text="upstream down"), tokens=Tokens("t"))

    with pytest.raises(ApiError) as caught:
        client.list_orgs()
    assert (caught.value.status, caught.value.title) == (503, "UnknownError")
    assert caught.value.detail == "HTTP 503 Service Unavailable"


def test_connection_failure_names_the_api_url() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(ApiUnreachable) as caught:
        _client(refuse, tokens=Tokens("t")).list_orgs()
    assert str(caught.value) == (
        "cannot reach API at http://api.test: [Errno 111] Connection refused"
    )


# -- requests ---------------------------------------------------------------------------------


def test_requests_carry_the_bearer_token_and_a_request_id() -> None:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"guid": "g", "name": "o1"})

    _client(api, tokens=Tokens("abc")).create_org("o1")

    request = seen[0]
    assert request.headers["authorization"] == "bearer abc"
    assert request.headers["x-request-id"]
    assert json.loads(request.content) == {"name": "o1"}


def test_pagination_follows_absolute_next_hrefs_with_their_filters() -> None:
    urls: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        page = int(request.url.params.get("page", "1"))
        if page == 1:
            return _page(
                [{"guid": "a1"}, {"guid": "a2"}], f"{API}/v3/apps?space_guids=s1&page=2&per_page=2"
            )
        if page == 2:
            return _page([{"guid": "a3"}], f"{API}/v3/apps?space_guids=s1&page=3&per_page=2")
        return _page([{"guid": "a4"}], None)

    apps = _client(api, tokens=Tokens("t")).list_apps(space_guid="s1")

    assert [app["guid"] for app in apps] == ["a1", "a2", "a3", "a4"]
    assert urls == [
        f"{API}/v3/apps?space_guids=s1",
        f"{API}/v3/apps?space_guids=s1&page=2&per_page=2",
        f"{API}/v3/apps?space_guids=s1&page=3&per_page=2",
    ]


def test_pagination_stops_at_the_limit() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        assert request.url.params["per_page"] == "2"
        assert request.url.params["order_by"] == "-created_at"
        return _page([{"guid": "e1"}, {"guid": "e2"}], f"{API}/v3/audit_events?page=2")

    events = _client(api, tokens=Tokens("t")).list_audit_events(limit=2)
    assert [event["guid"] for event in events] == ["e1", "e2"]


def test_pagination_refuses_to_send_the_token_to_another_host() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return _page([{"guid": "a1"}], "http://elsewhere.test/v3/apps?page=2")

    with pytest.raises(UnexpectedResponse, match="refusing to send credentials"):
        _client(api, tokens=Tokens("t")).list_apps()


def test_pagination_that_loops_is_an_error() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return _page([{"guid": "a1"}], f"{API}/v3/apps?page=2")

    with pytest.raises(UnexpectedResponse, match="loops"):
        _client(api, tokens=Tokens("t")).list_apps()


def test_env_var_patch_sends_null_to_delete() -> None:
    bodies: list[Any] = []

    def api(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"var": {"KEEP": "1"}, "links": {}})

    result = _client(api, tokens=Tokens("t")).update_environment_variables("a1", {"DROP": None})
    assert bodies == [{"var": {"DROP": None}}]
    assert result == {"KEEP": "1"}


# -- deletes and jobs --------------------------------------------------------------------------


def _job(state: str, errors: list[dict[str, Any]] | None = None) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "guid": "j1",
            "operation": "app.delete",
            "state": state,
            "errors": errors or [],
            "warnings": [],
            "links": {},
        },
    )


def test_delete_returns_the_job_guid_from_location() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        assert request.method == "DELETE"
        return httpx.Response(202, headers={"Location": f"{API}/v3/jobs/j-123"})

    assert _client(api, tokens=Tokens("t")).delete_app("a1") == "j-123"


def test_delete_without_location_is_an_unexpected_response() -> None:
    with pytest.raises(UnexpectedResponse, match="without a job Location"):
        _client(lambda r: httpx.Response(204), tokens=Tokens("t")).delete_org("o1")


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def test_wait_for_job_polls_with_backoff_until_complete() -> None:
    states = iter(["PROCESSING", "PROCESSING", "POLLING", "COMPLETE"])
    fake = FakeTime()
    client = _client(
        lambda r: _job(next(states)), tokens=Tokens("t"), sleep=fake.sleep, clock=fake.clock
    )

    job = client.wait_for_job("j1", timeout=10)

    assert job["state"] == "COMPLETE"
    assert fake.sleeps == [0.1, 0.2, 0.4]


def test_wait_for_job_raises_the_job_error_when_it_fails() -> None:
    errors = [{"code": 10008, "title": "CF-UnprocessableEntity", "detail": "disk on fire"}]
    client = _client(lambda r: _job("FAILED", errors), tokens=Tokens("t"))

    with pytest.raises(JobFailed, match=r"app\.delete failed: disk on fire") as caught:
        client.wait_for_job("j1")
    assert caught.value.errors[0]["title"] == "CF-UnprocessableEntity"


def test_wait_for_job_gives_up_after_the_timeout() -> None:
    fake = FakeTime()
    client = _client(
        lambda r: _job("PROCESSING"), tokens=Tokens("t"), sleep=fake.sleep, clock=fake.clock
    )

    with pytest.raises(JobTimedOut, match="still PROCESSING after 5s"):
        client.wait_for_job("j1", timeout=5)
    assert fake.now == pytest.approx(5)
    assert max(fake.sleeps) <= 2.0


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("api.example.org", "https://api.example.org"),
        ("http://127.0.0.1:9022/", "http://127.0.0.1:9022"),
        (" https://api.example.org/cf ", "https://api.example.org/cf"),
    ],
)
def test_api_urls_are_normalized(given: str, normalized: str) -> None:
    assert normalize_api_url(given) == normalized


@pytest.mark.parametrize("given", ["http://[::1", "ftp://files.example.org", "http://"])
def test_impossible_api_urls_are_refused(given: str) -> None:
    with pytest.raises(InvalidApiUrl, match="is not a valid API URL"):
        normalize_api_url(given)


def test_api_paths_keep_the_api_url_path_prefix() -> None:
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return _page([], None)

    OvercastClient(f"{API}/cf", transport=httpx.MockTransport(api), tokens=Tokens("t")).list_orgs()
    assert seen == [f"{API}/cf/v3/organizations"]


def test_something_that_is_not_an_api_is_named_as_such() -> None:
    client = _client(lambda r: httpx.Response(200, text="<html>hello</html>"))

    with pytest.raises(UnexpectedResponse, match="does not look like an Overcast or Cloud Foundry"):
        client.login_password("admin", "x")

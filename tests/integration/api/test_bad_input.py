"""Hostile and malformed input: always a CF-shaped error with the right status, never a 500,
and nothing left behind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.api.conftest import Api


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"errors"}, body
    (error,) = body["errors"]
    assert set(error) == {"code", "title", "detail"}
    return dict(error)


async def _counts(api: Api) -> tuple[int, ...]:
    totals = []
    for path in ("/v3/organizations", "/v3/spaces", "/v3/apps", "/v3/processes"):
        body = (await api.http.get(path, headers=api.admin)).json()
        totals.append(body["pagination"]["total_results"])
    return tuple(totals)


async def test_malformed_json(api: Api) -> None:
    for raw in (b"{", b"{'name': 'x'}", b"\xff\xfe", b"name=x", b'{"name": "a",}'):
        response = await api.http.post(
            "/v3/organizations",
            content=raw,
            headers={**api.admin, "Content-Type": "application/json"},
        )
        assert response.status_code == 400, raw
        assert _error(response)["title"] == "CF-MessageParseError"


@pytest.mark.parametrize(
    "body, fragment",
    [
        ([], "JSON object"),
        ("acme", "JSON object"),
        ({}, "name is required"),
        ({"name": 7}, "name"),
        ({"name": None}, "name"),
        ({"name": "x", "suspended": "yes"}, "suspended"),
        ({"name": "x", "color": "red"}, "Unknown field(s): 'color'"),
        ({"name": "x" * 256}, "name"),
        ({"name": "   "}, "blank"),
        ({"name": "a\u0000b"}, "control characters"),
        ({"name": "x", "metadata": {"labels": {"bad key!": "v"}}}, "label"),
        ({"name": "x", "metadata": {"labels": {"k": 5}}}, "labels"),
        ({"name": "x", "metadata": {"labels": {"k": "v"}, "extra": {}}}, "Unknown field(s)"),
    ],
)
async def test_wrong_org_bodies(api: Api, body: Any, fragment: str) -> None:
    response = await api.http.post("/v3/organizations", headers=api.admin, json=body)
    assert response.status_code == 422, response.text
    error = _error(response)
    assert error["title"] == "CF-UnprocessableEntity" and error["code"] == 10008
    assert fragment in error["detail"]
    assert await _counts(api) == (0, 0, 0, 0)


async def test_wrong_app_bodies_leave_nothing(api: Api) -> None:
    org = await api.org()
    space = await api.space(org["guid"])
    good_space = {"space": {"data": {"guid": space["guid"]}}}
    bodies = [
        {"name": "a", "relationships": {"space": {"data": {"guid": "nope"}}}},
        {"name": "a", "relationships": {"space": {"data": {}}}},
        {"name": "a", "relationships": {"space": "x"}},
        {"name": "a", "relationships": good_space, "environment_variables": {"VCAP_X": "1"}},
        {"name": "a", "relationships": good_space, "environment_variables": {"A": [1]}},
        {"name": "a", "relationships": good_space, "environment_variables": {"A": "x" * 140_000}},
        {"name": "a", "relationships": good_space, "lifecycle": {"type": "docker"}},
        {
            "name": "a",
            "relationships": good_space,
            "lifecycle": {"type": "buildpack", "data": {"stack": "windows"}},
        },
    ]
    for body in bodies:
        response = await api.http.post("/v3/apps", headers=api.admin, json=body)
        assert response.status_code in (404, 413, 422), (body, response.text)
        _error(response)
    assert await _counts(api) == (1, 1, 0, 0)


async def test_wrong_scale_values(api: Api) -> None:
    org = await api.org()
    app = await api.app((await api.space(org["guid"]))["guid"])
    url = f"/v3/apps/{app['guid']}/processes/web/actions/scale"
    for body in (
        {"instances": -1},
        {"instances": "3"},
        {"instances": 3.5},
        {"instances": True},
        {"instances": 10**30},
        {"memory_in_mb": 0},
        {"disk_in_mb": -5},
        {"instances": 1, "cpu": 2},
    ):
        response = await api.http.post(url, headers=api.admin, json=body)
        assert response.status_code == 422, (body, response.text)
        _error(response)
    web = (await api.http.get(f"/v3/apps/{app['guid']}/processes/web", headers=api.admin)).json()
    assert (web["instances"], web["memory_in_mb"], web["disk_in_mb"]) == (1, 256, 1024)


@pytest.mark.parametrize(
    "query",
    [
        "per_page=0",
        "per_page=5001",
        "per_page=abc",
        "page=0",
        "page=-1",
        "page=1&page=2",
        "order_by=color",
        "include=everything",
        "colors=red",
        "label_selector=env=prod",
        "created_ats[lt]=yesterday",
    ],
)
async def test_bad_query_parameters(api: Api, query: str) -> None:
    response = await api.http.get(f"/v3/organizations?{query}", headers=api.admin)
    assert response.status_code == 400, query
    error = _error(response)
    assert (error["code"], error["title"]) == (10005, "CF-BadQueryParameter")


async def test_unknown_guids_are_404(api: Api) -> None:
    for path in (
        "/v3/organizations/x",
        "/v3/spaces/x",
        "/v3/apps/x",
        "/v3/processes/x",
        "/v3/roles/x",
        "/v3/users/x",
        "/v3/domains/x",
        "/v3/audit_events/x",
        "/v3/jobs/x",
        "/v3/apps/x/env",
        "/v3/apps/x/processes/web",
    ):
        response = await api.http.get(path, headers=api.admin)
        assert response.status_code == 404, path
        assert _error(response)["title"] == "CF-ResourceNotFound"


async def test_unknown_endpoints_and_methods(api: Api) -> None:
    for method, path in (
        ("GET", "/v3/nothing"),
        ("PUT", "/v3/apps"),
        ("POST", "/v3/apps/x/actions/explode"),
        ("GET", "/v2/info"),
    ):
        response = await api.http.request(method, path, headers=api.admin)
        assert response.status_code == 404, (method, path)
        assert _error(response) == {
            "code": 10000,
            "title": "CF-NotFound",
            "detail": "Unknown request",
        }


async def test_oversized_bodies_are_refused(api: Api) -> None:
    big = {"name": "x", "metadata": {"annotations": {"a": "y" * 70_000}}}
    response = await api.http.post("/v3/organizations", headers=api.admin, json=big)
    assert response.status_code == 413
    assert _error(response)["title"] == "CF-RequestEntityTooLarge"

    async def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(100):
            yield b" " * 1024

    streamed = await api.http.post(
        "/v3/organizations",
        content=chunks(),
        headers={**api.admin, "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    assert await _counts(api) == (0, 0, 0, 0)


async def test_roles_with_wrong_shapes(api: Api) -> None:
    org = await api.org()
    space = await api.space(org["guid"])
    guid, _ = await api.user("u1")
    user = {"data": {"guid": guid}}
    cases = [
        {
            "type": "emperor",
            "relationships": {"user": user, "organization": {"data": {"guid": org["guid"]}}},
        },
        {
            "type": "space_developer",
            "relationships": {"user": user, "organization": {"data": {"guid": org["guid"]}}},
        },
        {
            "type": "organization_user",
            "relationships": {
                "user": user,
                "organization": {"data": {"guid": org["guid"]}},
                "space": {"data": {"guid": space["guid"]}},
            },
        },
        {
            "type": "organization_user",
            "relationships": {
                "user": {"data": {"guid": "ghost"}},
                "organization": {"data": {"guid": org["guid"]}},
            },
        },
    ]
    for body in cases:
        response = await api.http.post("/v3/roles", headers=api.admin, json=body)
        assert response.status_code == 422, (body, response.text)
        _error(response)


async def test_users_bad_input(api: Api) -> None:
    short = await api.http.post(
        "/v3/users", headers=api.admin, json={"username": "u", "password": "short"}
    )
    assert short.status_code == 422 and "short" not in short.text.replace("Password", "")
    await api.user("taken")
    taken = await api.http.post(
        "/v3/users", headers=api.admin, json={"username": "TAKEN", "password": "long-enough-1"}
    )
    assert taken.status_code == 422 and _error(taken)["title"] == "CF-UniquenessError"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
app_bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "name": json_values | st.text(max_size=300),
            "relationships": json_values,
            "environment_variables": json_values,
            "lifecycle": json_values,
            "metadata": json_values,
        },
    )
    | json_values
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=app_bodies)
async def test_random_app_bodies_never_cause_a_500(api: Api, body: Any) -> None:
    response = await api.http.post(
        "/v3/apps",
        headers=api.admin,
        content=json.dumps(body),
        params={},
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        _error(response)

"""/v3/domains: shared and private domains, their rules (valid DNS names, one owner per name,
no claiming another org's names or the API host), and deleting a domain with its routes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api.conftest import BASE, Api

APPS_DOMAIN = "apps.localhost"


def _error(response: Any) -> dict[str, Any]:
    (error,) = response.json()["errors"]
    return dict(error)


async def _create(
    api: Api, name: str, org_guid: str | None = None, headers: dict[str, str] | None = None
) -> Any:
    body: dict[str, Any] = {"name": name}
    if org_guid:
        body["relationships"] = {"organization": {"data": {"guid": org_guid}}}
    return await api.http.post("/v3/domains", headers=headers or api.admin, json=body)


async def _manager(api: Api, org_guid: str, name: str = "boss") -> dict[str, str]:
    guid, headers = await api.user(name)
    assert (await api.role("organization_manager", guid, org=org_guid)).status_code == 201
    return headers


async def test_admin_creates_a_shared_domain_in_cf_shape(api: Api) -> None:
    response = await api.http.post(
        "/v3/domains",
        headers=api.admin,
        # cloudfoundry-client sends a null organization for a shared domain.
        json={
            "name": "Shared.Example.COM",
            "internal": False,
            "relationships": {"organization": None, "shared_organizations": None},
            "metadata": {"labels": {"tier": "gold"}, "annotations": None},
        },
    )
    assert response.status_code == 201, response.text
    assert "location" not in response.headers
    domain = response.json()
    assert domain["name"] == "shared.example.com"
    assert domain["internal"] is False and domain["supported_protocols"] == ["http"]
    assert domain["relationships"] == {
        "organization": {"data": None},
        "shared_organizations": {"data": []},
    }
    assert domain["metadata"] == {"labels": {"tier": "gold"}, "annotations": {}}
    assert domain["links"] == {"self": {"href": f"{BASE}/v3/domains/{domain['guid']}"}}
    got = await api.http.get(f"/v3/domains/{domain['guid']}", headers=api.admin)
    assert got.json() == domain
    events = (
        await api.http.get(
            f"/v3/audit_events?types=audit.domain.create&target_guids={domain['guid']}",
            headers=api.admin,
        )
    ).json()
    assert events["pagination"]["total_results"] == 1


async def test_org_manager_creates_a_private_domain(api: Api) -> None:
    org = await api.org("acme")
    headers = await _manager(api, org["guid"])
    response = await _create(api, "acme.example.com", org["guid"], headers)
    assert response.status_code == 201, response.text
    domain = response.json()
    assert domain["relationships"]["organization"] == {"data": {"guid": org["guid"]}}
    assert domain["links"]["organization"]["href"] == f"{BASE}/v3/organizations/{org['guid']}"
    # Listed for the org, and through the org's endpoints.
    listed = (await api.http.get("/v3/domains", headers=headers)).json()
    assert sorted(d["name"] for d in listed["resources"]) == ["acme.example.com", APPS_DOMAIN]
    of_org = (
        await api.http.get(f"/v3/organizations/{org['guid']}/domains", headers=headers)
    ).json()
    assert sorted(d["name"] for d in of_org["resources"]) == ["acme.example.com", APPS_DOMAIN]
    default = await api.http.get(
        f"/v3/organizations/{org['guid']}/domains/default", headers=headers
    )
    assert default.json()["name"] == APPS_DOMAIN
    # A manager cannot make shared domains; another org's people cannot see this one.
    shared = await _create(api, "mine.example.com", headers=headers)
    assert shared.status_code == 403
    other = await api.org("other")
    _, stranger = await api.user("stranger")
    got = await api.http.get(f"/v3/domains/{domain['guid']}", headers=stranger)
    assert got.status_code == 404
    assert (await _create(api, "x.example.org", other["guid"], headers)).status_code == 422


async def test_who_may_create_private_domains(api: Api) -> None:
    org = await api.org("acme")
    auditor_guid, auditor = await api.user("auditor")
    await api.role("organization_auditor", auditor_guid, org=org["guid"])
    response = await _create(api, "acme.example.com", org["guid"], auditor)
    assert response.status_code == 403
    assert _error(response)["title"] == "CF-NotAuthorized"
    _, nobody = await api.user("nobody")
    response = await _create(api, "acme.example.com", org["guid"], nobody)
    assert response.status_code == 422
    assert "does not exist or you do not have access" in _error(response)["detail"]
    assert (await _create(api, "acme.example.com", "no-such-org")).status_code == 422


@pytest.mark.parametrize(
    "name",
    [
        "localhost",
        "-bad.example.com",
        "bad-.example.com",
        "under_score.example.com",
        "a..b.com",
        ".example.com",
        "example.com.",
        "spa ce.example.com",
        f"{'a' * 64}.example.com",
        ".".join(["abcdefghi"] * 26),  # 259 characters
        "ünicode.example.com",
    ],
)
async def test_invalid_domain_names(api: Api, name: str) -> None:
    response = await _create(api, name)
    assert response.status_code == 422, response.text
    assert _error(response)["title"] == "CF-UnprocessableEntity"


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({}, "name is required"),
        ({"name": 5}, "name"),
        ({"name": "a.example.com", "internal": "yes"}, "internal"),
        ({"name": "a.example.com", "color": "red"}, "Unknown field(s): 'color'"),
        ({"name": "a.example.com", "router_group": {"guid": "x"}}, "Unknown field(s)"),
        (
            {"name": "a.example.com", "relationships": {"organization": {"guid": "x"}}},
            "Unknown field(s)",
        ),
    ],
)
async def test_wrong_domain_bodies(api: Api, body: dict[str, Any], fragment: str) -> None:
    response = await api.http.post("/v3/domains", headers=api.admin, json=body)
    assert response.status_code == 422, response.text
    assert fragment in _error(response)["detail"]


async def test_domain_names_are_unique_ignoring_case(api: Api) -> None:
    assert (await _create(api, "one.example.com")).status_code == 201
    response = await _create(api, "ONE.example.com")
    assert response.status_code == 422
    assert _error(response) == {
        "code": 10016,
        "title": "CF-UniquenessError",
        "detail": 'The domain name "one.example.com" is already in use',
    }
    org = await api.org()
    # A private domain cannot take a shared domain's name either.
    assert (await _create(api, APPS_DOMAIN, org["guid"])).status_code == 422


async def test_private_domains_cannot_shadow_another_orgs(api: Api) -> None:
    acme, other = await api.org("acme"), await api.org("other")
    assert (await _create(api, "acme.example.com", acme["guid"])).status_code == 201
    # Under another org's private domain: refused, whoever asks.
    for name in ("shop.acme.example.com", "a.b.acme.example.com"):
        response = await _create(api, name, other["guid"])
        assert response.status_code == 422, name
        assert "private domain of another organization" in _error(response)["detail"]
    assert (await _create(api, "shop.acme.example.com")).status_code == 422
    # Under its own org's domain, or beside it: fine.
    assert (await _create(api, "shop.acme.example.com", acme["guid"])).status_code == 201
    assert (await _create(api, "other.example.com", other["guid"])).status_code == 201
    # Under a shared domain: fine (as in CF).
    assert (await _create(api, f"acme.{APPS_DOMAIN}", acme["guid"])).status_code == 201


async def test_the_api_host_and_route_names_cannot_become_domains(api: Api) -> None:
    response = await _create(api, "api.test")  # the API's own host (BASE)
    assert response.status_code == 422
    assert "API" in _error(response)["detail"]
    org = await api.org()
    space = await api.space(org["guid"])
    apps = (await api.http.get(f"/v3/domains?names={APPS_DOMAIN}", headers=api.admin)).json()
    route = await api.http.post(
        "/v3/routes",
        headers=api.admin,
        json={
            "host": "shop",
            "relationships": {
                "space": {"data": {"guid": space["guid"]}},
                "domain": {"data": {"guid": apps["resources"][0]["guid"]}},
            },
        },
    )
    assert route.status_code == 201
    response = await _create(api, f"shop.{APPS_DOMAIN}", org["guid"])
    assert response.status_code == 422
    assert "already in use by a route" in _error(response)["detail"]


async def test_internal_domains_are_shared_only(api: Api) -> None:
    org = await api.org()
    response = await api.http.post(
        "/v3/domains",
        headers=api.admin,
        json={
            "name": "apps.internal",
            "internal": True,
            "relationships": {"organization": {"data": {"guid": org["guid"]}}},
        },
    )
    assert response.status_code == 422
    created = await api.http.post(
        "/v3/domains", headers=api.admin, json={"name": "apps.internal", "internal": True}
    )
    assert created.status_code == 201 and created.json()["internal"] is True
    shared_with = await api.http.post(
        "/v3/domains",
        headers=api.admin,
        json={
            "name": "p.example.com",
            "relationships": {
                "organization": {"data": {"guid": org["guid"]}},
                "shared_organizations": {"data": [{"guid": org["guid"]}]},
            },
        },
    )
    assert shared_with.status_code == 422
    assert "not supported" in _error(shared_with)["detail"]


async def test_domain_filters(api: Api) -> None:
    acme, other = await api.org("acme"), await api.org("other")
    a = (await _create(api, "a.example.com", acme["guid"])).json()
    b = (await _create(api, "b.example.com", other["guid"])).json()

    async def names(query: str) -> list[str]:
        body = (await api.http.get(f"/v3/domains?{query}", headers=api.admin)).json()
        return sorted(d["name"] for d in body["resources"])

    assert await names("") == ["a.example.com", APPS_DOMAIN, "b.example.com"]
    assert await names("names=A.example.com,nope.com") == ["a.example.com"]
    assert await names(f"guids={b['guid']}") == ["b.example.com"]
    assert await names(f"organization_guids={acme['guid']}") == ["a.example.com"]
    assert await names(f"guids={a['guid']}&names=b.example.com") == []
    bad = await api.http.get("/v3/domains?hosts=x", headers=api.admin)
    assert bad.status_code == 400


async def test_update_domain_metadata(api: Api) -> None:
    org = await api.org()
    domain = (await _create(api, "acme.example.com", org["guid"])).json()
    response = await api.http.patch(
        f"/v3/domains/{domain['guid']}",
        headers=api.admin,
        json={"metadata": {"labels": {"env": "prod"}, "annotations": {"note": "x"}}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {"labels": {"env": "prod"}, "annotations": {"note": "x"}}
    cleared = await api.http.patch(
        f"/v3/domains/{domain['guid']}",
        headers=api.admin,
        json={"metadata": {"labels": {"env": None}}},
    )
    assert cleared.json()["metadata"]["labels"] == {}
    renamed = await api.http.patch(
        f"/v3/domains/{domain['guid']}", headers=api.admin, json={"name": "other.example.com"}
    )
    assert renamed.status_code == 422
    # An org member who is no manager may read it but not change it.
    guid, member = await api.user("member")
    await api.role("organization_user", guid, org=org["guid"])
    forbidden = await api.http.patch(
        f"/v3/domains/{domain['guid']}", headers=member, json={"metadata": {}}
    )
    assert forbidden.status_code == 403
    apps = (await api.http.get(f"/v3/domains?names={APPS_DOMAIN}", headers=member)).json()
    shared = apps["resources"][0]["guid"]
    assert (
        await api.http.patch(f"/v3/domains/{shared}", headers=member, json={"metadata": {}})
    ).status_code == 403
    assert (await api.http.delete(f"/v3/domains/{shared}", headers=member)).status_code == 403


async def test_deleting_a_domain_deletes_its_routes(api: Api) -> None:
    org = await api.org()
    space = await api.space(org["guid"])
    app = await api.app(space["guid"])
    domain = (await _create(api, "acme.example.com", org["guid"])).json()
    route = await api.http.post(
        "/v3/routes",
        headers=api.admin,
        json={
            "relationships": {
                "space": {"data": {"guid": space["guid"]}},
                "domain": {"data": {"guid": domain["guid"]}},
            }
        },
    )
    assert route.status_code == 201, route.text
    route_guid = route.json()["guid"]
    mapped = await api.http.post(
        f"/v3/routes/{route_guid}/destinations",
        headers=api.admin,
        json={"destinations": [{"app": {"guid": app["guid"]}}]},
    )
    assert mapped.status_code == 200
    response = await api.http.delete(f"/v3/domains/{domain['guid']}", headers=api.admin)
    assert response.status_code == 202 and response.content == b""
    job = await api.wait_job(response.headers["location"])
    assert job["state"] == "COMPLETE" and job["operation"] == "domain.delete"
    assert (
        await api.http.get(f"/v3/domains/{domain['guid']}", headers=api.admin)
    ).status_code == 404
    assert (await api.http.get(f"/v3/routes/{route_guid}", headers=api.admin)).status_code == 404
    assert (await api.http.get(f"/v3/apps/{app['guid']}/routes", headers=api.admin)).json()[
        "resources"
    ] == []
    # The name is free again.
    assert (await _create(api, "acme.example.com", org["guid"])).status_code == 201


async def test_deleting_an_org_deletes_its_private_domains(api: Api) -> None:
    org = await api.org()
    domain = (await _create(api, "acme.example.com", org["guid"])).json()
    response = await api.http.delete(f"/v3/organizations/{org['guid']}", headers=api.admin)
    assert (await api.wait_job(response.headers["location"]))["state"] == "COMPLETE"
    assert (
        await api.http.get(f"/v3/domains/{domain['guid']}", headers=api.admin)
    ).status_code == 404

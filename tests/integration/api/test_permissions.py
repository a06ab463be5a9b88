"""CF roles on every endpoint: invisible objects are 404, visible but forbidden is 403."""

from __future__ import annotations

from tests.integration.api.conftest import Api


async def _world(api: Api) -> dict:
    org = await api.org("acme")
    dev = await api.space(org["guid"], "dev")
    prod = await api.space(org["guid"], "prod")
    other_org = await api.org("other")
    other_space = await api.space(other_org["guid"], "secret")
    app = await api.app(dev["guid"], "web")
    hidden_app = await api.app(other_space["guid"], "hidden")
    return {
        "org": org,
        "dev": dev,
        "prod": prod,
        "other_org": other_org,
        "other_space": other_space,
        "app": app,
        "hidden_app": hidden_app,
    }


async def test_a_user_without_roles_sees_nothing(api: Api) -> None:
    world = await _world(api)
    _, headers = await api.user("nobody")
    for path in (
        "/v3/organizations",
        "/v3/spaces",
        "/v3/apps",
        "/v3/processes",
        "/v3/audit_events",
        "/v3/roles",
    ):
        body = (await api.http.get(path, headers=headers)).json()
        assert body["pagination"]["total_results"] == 0, path
    for path in (
        f"/v3/organizations/{world['org']['guid']}",
        f"/v3/spaces/{world['dev']['guid']}",
        f"/v3/apps/{world['app']['guid']}",
        f"/v3/apps/{world['app']['guid']}/env",
    ):
        response = await api.http.get(path, headers=headers)
        assert response.status_code == 404, path
        assert response.json()["errors"][0]["title"] == "CF-ResourceNotFound"
    domains = (await api.http.get("/v3/domains", headers=headers)).json()
    assert [d["name"] for d in domains["resources"]] == ["apps.localhost"]


async def test_only_admins_create_orgs_and_users(api: Api) -> None:
    _, headers = await api.user("dev1")
    org = await api.http.post("/v3/organizations", headers=headers, json={"name": "mine"})
    assert org.status_code == 403
    assert org.json()["errors"][0] == {
        "code": 10003,
        "title": "CF-NotAuthorized",
        "detail": "You are not authorized to perform the requested action",
    }
    user = await api.http.post(
        "/v3/users", headers=headers, json={"username": "x", "password": "whatever123"}
    )
    assert user.status_code == 403
    queues = await api.http.get("/v3/x/queues", headers=headers)
    assert queues.status_code == 403


async def test_space_roles_need_an_org_role_first(api: Api) -> None:
    world = await _world(api)
    guid, _ = await api.user("dev1")
    refused = await api.role("space_developer", guid, space=world["dev"]["guid"])
    assert refused.status_code == 422 and "organization" in refused.json()["errors"][0]["detail"]
    assert (await api.role("organization_user", guid, org=world["org"]["guid"])).status_code == 201
    assert (await api.role("space_developer", guid, space=world["dev"]["guid"])).status_code == 201
    duplicate = await api.role("space_developer", guid, space=world["dev"]["guid"])
    assert duplicate.status_code == 422
    assert duplicate.json()["errors"][0]["title"] == "CF-UniquenessError"


async def test_space_developer(api: Api) -> None:
    world = await _world(api)
    guid, headers = await api.user("dev1")
    await api.role("organization_user", guid, org=world["org"]["guid"])
    await api.role("space_developer", guid, space=world["dev"]["guid"])
    orgs = (await api.http.get("/v3/organizations", headers=headers)).json()
    assert [o["name"] for o in orgs["resources"]] == ["acme"]
    spaces = (await api.http.get("/v3/spaces", headers=headers)).json()
    assert [s["name"] for s in spaces["resources"]] == ["dev"]
    app = await api.app(world["dev"]["guid"], "mine", headers=headers)
    await api.droplet(app["guid"], headers)
    assert (
        await api.http.post(f"/v3/apps/{app['guid']}/actions/start", headers=headers)
    ).status_code == 200
    assert (await api.http.get(f"/v3/apps/{app['guid']}/env", headers=headers)).status_code == 200
    in_prod = await api.http.post(
        "/v3/apps",
        headers=headers,
        json={"name": "x", "relationships": {"space": {"data": {"guid": world["prod"]["guid"]}}}},
    )
    assert in_prod.status_code == 404  # prod is invisible to them
    new_space = await api.http.post(
        "/v3/spaces",
        headers=headers,
        json={
            "name": "x",
            "relationships": {"organization": {"data": {"guid": world["org"]["guid"]}}},
        },
    )
    assert new_space.status_code == 403
    hidden = await api.http.get(f"/v3/apps/{world['hidden_app']['guid']}", headers=headers)
    assert hidden.status_code == 404
    apps = (await api.http.get("/v3/apps", headers=headers)).json()
    assert sorted(a["name"] for a in apps["resources"]) == ["mine", "web"]


async def test_space_auditor_reads_but_cannot_change(api: Api) -> None:
    world = await _world(api)
    guid, headers = await api.user("auditor")
    await api.role("organization_user", guid, org=world["org"]["guid"])
    await api.role("space_auditor", guid, space=world["dev"]["guid"])
    app_guid = world["app"]["guid"]
    assert (await api.http.get(f"/v3/apps/{app_guid}", headers=headers)).status_code == 200
    for method, path, body in (
        ("POST", f"/v3/apps/{app_guid}/actions/start", None),
        ("PATCH", f"/v3/apps/{app_guid}", {"name": "renamed"}),
        ("DELETE", f"/v3/apps/{app_guid}", None),
        ("GET", f"/v3/apps/{app_guid}/env", None),
        ("GET", f"/v3/apps/{app_guid}/environment_variables", None),
        ("PATCH", f"/v3/apps/{app_guid}/environment_variables", {"var": {"A": "b"}}),
    ):
        response = await api.http.request(method, path, headers=headers, json=body)
        assert response.status_code == 403, (method, path)
    web = (await api.http.get(f"/v3/apps/{app_guid}/processes/web", headers=headers)).json()
    scale = await api.http.post(
        web["links"]["scale"]["href"], headers=headers, json={"instances": 5}
    )
    assert scale.status_code == 403


async def test_org_manager_manages_the_org(api: Api) -> None:
    world = await _world(api)
    guid, headers = await api.user("boss")
    await api.role("organization_manager", guid, org=world["org"]["guid"])
    spaces = (await api.http.get("/v3/spaces", headers=headers)).json()
    assert sorted(s["name"] for s in spaces["resources"]) == ["dev", "prod"]
    created = await api.http.post(
        "/v3/spaces",
        headers=headers,
        json={
            "name": "staging",
            "relationships": {"organization": {"data": {"guid": world["org"]["guid"]}}},
        },
    )
    assert created.status_code == 201
    renamed = await api.http.patch(
        f"/v3/organizations/{world['org']['guid']}", headers=headers, json={"name": "acme2"}
    )
    assert renamed.status_code == 200
    suspended = await api.http.patch(
        f"/v3/organizations/{world['org']['guid']}", headers=headers, json={"suspended": True}
    )
    assert suspended.status_code == 403
    delete_org = await api.http.delete(f"/v3/organizations/{world['org']['guid']}", headers=headers)
    assert delete_org.status_code == 403
    helper_guid, _ = await api.user("helper")
    granted = await api.role(
        "organization_user", helper_guid, org=world["org"]["guid"], headers=headers
    )
    assert granted.status_code == 201
    elsewhere = await api.role(
        "organization_user", helper_guid, org=world["other_org"]["guid"], headers=headers
    )
    assert elsewhere.status_code == 404
    # a manager sees the roles of their org, not of others
    roles = (await api.http.get("/v3/roles?include=user", headers=headers)).json()
    assert {r["relationships"]["organization"]["data"]["guid"] for r in roles["resources"]} == {
        world["org"]["guid"]
    }
    assert {u["username"] for u in roles["included"]["users"]} == {"boss", "helper"}
    # the app inside is not theirs to change (no space developer role)
    app_start = await api.http.post(
        f"/v3/apps/{world['app']['guid']}/actions/start", headers=headers
    )
    assert app_start.status_code == 403


async def test_role_delete_is_a_job_and_takes_effect(api: Api) -> None:
    world = await _world(api)
    guid, headers = await api.user("dev1")
    await api.role("organization_user", guid, org=world["org"]["guid"])
    role = (await api.role("space_developer", guid, space=world["dev"]["guid"])).json()
    assert (
        await api.http.get(f"/v3/apps/{world['app']['guid']}", headers=headers)
    ).status_code == 200
    response = await api.http.delete(f"/v3/roles/{role['guid']}", headers=api.admin)
    assert response.status_code == 202
    assert (await api.wait_job(response.headers["location"]))["state"] == "COMPLETE"
    assert (
        await api.http.get(f"/v3/apps/{world['app']['guid']}", headers=headers)
    ).status_code == 404


async def test_jobs_belong_to_their_creator(api: Api) -> None:
    world = await _world(api)
    response = await api.http.delete(f"/v3/apps/{world['app']['guid']}", headers=api.admin)
    _, headers = await api.user("someone")
    assert (await api.http.get(response.headers["location"], headers=headers)).status_code == 404


async def test_events_follow_visibility(api: Api) -> None:
    world = await _world(api)
    guid, headers = await api.user("dev1")
    await api.role("organization_user", guid, org=world["org"]["guid"])
    await api.role("space_developer", guid, space=world["dev"]["guid"])
    events = (await api.http.get("/v3/audit_events", headers=headers)).json()["resources"]
    targets = {e["target"]["guid"] for e in events}
    assert world["app"]["guid"] in targets
    assert world["hidden_app"]["guid"] not in targets
    assert world["other_org"]["guid"] not in targets

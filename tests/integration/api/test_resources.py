"""Orgs, spaces, apps, processes, env, jobs: the CF v3 shapes and behaviours."""

from __future__ import annotations

import pytest

from tests.integration.api.conftest import BASE, Api


def _links_are_objects(resource: dict) -> None:
    for name, link in resource["links"].items():
        assert isinstance(link, dict) and link["href"].startswith(BASE), name


async def test_org_lifecycle(api: Api) -> None:
    created = await api.http.post(
        "/v3/organizations",
        headers=api.admin,
        json={"name": "acme", "metadata": {"labels": {"env": "prod"}}},
    )
    assert created.status_code == 201 and "location" not in created.headers
    org = created.json()
    _links_are_objects(org)
    assert org["name"] == "acme" and org["suspended"] is False
    assert org["metadata"] == {"labels": {"env": "prod"}, "annotations": {}}
    assert org["created_at"].endswith("Z") and len(org["created_at"]) == 20
    patched = await api.http.patch(
        f"/v3/organizations/{org['guid']}",
        headers=api.admin,
        json={"name": "acme-inc", "metadata": {"labels": {"env": None, "tier": "1"}}},
    )
    assert patched.status_code == 200
    assert patched.json()["name"] == "acme-inc"
    assert patched.json()["metadata"]["labels"] == {"tier": "1"}
    got = await api.http.get(f"/v3/organizations/{org['guid']}", headers=api.admin)
    assert got.json()["name"] == "acme-inc"
    default = await api.http.get(
        f"/v3/organizations/{org['guid']}/domains/default", headers=api.admin
    )
    assert default.status_code == 200 and default.json()["name"] == "apps.localhost"
    assert default.json()["relationships"]["shared_organizations"] == {"data": []}


async def test_pagination_and_filters(api: Api) -> None:
    for name in ("a1", "a2", "a3", "b1", "b2"):
        await api.org(name)
    first = (
        await api.http.get("/v3/organizations?per_page=2&order_by=name", headers=api.admin)
    ).json()
    pagination = first["pagination"]
    assert pagination["total_results"] == 5 and pagination["total_pages"] == 3
    assert [o["name"] for o in first["resources"]] == ["a1", "a2"]
    assert pagination["previous"] is None
    assert pagination["next"]["href"] == f"{BASE}/v3/organizations?order_by=name&page=2&per_page=2"
    following = (await api.http.get(pagination["next"]["href"], headers=api.admin)).json()
    assert [o["name"] for o in following["resources"]] == ["a3", "b1"]
    assert following["pagination"]["previous"]["href"].endswith("page=1&per_page=2")
    last = (await api.http.get(pagination["last"]["href"], headers=api.admin)).json()
    assert last["pagination"]["next"] is None and len(last["resources"]) == 1
    named = (await api.http.get("/v3/organizations?names=a1,B2", headers=api.admin)).json()
    assert sorted(o["name"] for o in named["resources"]) == ["a1", "b2"]
    singular = (
        await api.http.get("/v3/organizations?name=a3&per_page=1", headers=api.admin)
    ).json()
    assert [o["name"] for o in singular["resources"]] == ["a3"]
    descending = (
        await api.http.get("/v3/organizations?order_by=-name&per_page=1", headers=api.admin)
    ).json()
    assert descending["resources"][0]["name"] == "b2"


async def test_spaces_with_included_org(api: Api) -> None:
    org = await api.org()
    space = await api.space(org["guid"])
    assert space["relationships"]["organization"]["data"]["guid"] == org["guid"]
    listed = (
        await api.http.get(
            f"/v3/spaces?include=organization&organization_guids={org['guid']}", headers=api.admin
        )
    ).json()
    assert [s["guid"] for s in listed["resources"]] == [space["guid"]]
    assert [o["guid"] for o in listed["included"]["organizations"]] == [org["guid"]]


async def test_app_create_creates_web_process(api: Api) -> None:
    org = await api.org()
    space = await api.space(org["guid"])
    app = await api.app(
        space["guid"],
        environment_variables={"GREETING": "hi", "N": 3},
        lifecycle={"type": "buildpack", "data": {"buildpacks": ["python"]}},
    )
    assert app["state"] == "STOPPED"
    assert app["lifecycle"] == {
        "type": "buildpack",
        "data": {"buildpacks": ["python"], "stack": "overcast-linux"},
    }
    assert app["links"]["start"]["method"] == "POST" and app["links"]["stop"]["method"] == "POST"
    _links_are_objects(app)
    processes = (await api.http.get(app["links"]["processes"]["href"], headers=api.admin)).json()
    web = processes["resources"][0]
    assert (web["type"], web["instances"], web["memory_in_mb"]) == ("web", 1, 256)
    assert web["health_check"] == {
        "type": "port",
        "data": {"timeout": None, "invocation_timeout": None, "interval": None},
    }
    env = (
        await api.http.get(f"/v3/apps/{app['guid']}/environment_variables", headers=api.admin)
    ).json()
    assert env["var"] == {"GREETING": "hi", "N": "3"}
    duplicate = await api.http.post(
        "/v3/apps",
        headers=api.admin,
        json={"name": "WEB", "relationships": {"space": {"data": {"guid": space["guid"]}}}},
    )
    assert duplicate.status_code == 422
    assert duplicate.json()["errors"][0]["title"] == "CF-UniquenessError"
    assert duplicate.json()["errors"][0]["code"] == 10016


async def test_app_include_space_and_org(api: Api) -> None:
    org = await api.org()
    space = await api.space(org["guid"])
    app = await api.app(space["guid"])
    listed = (
        await api.http.get("/v3/apps?include=space,space.organization", headers=api.admin)
    ).json()
    assert listed["included"]["spaces"][0]["guid"] == space["guid"]
    assert listed["included"]["organizations"][0]["guid"] == org["guid"]
    one = (await api.http.get(f"/v3/apps/{app['guid']}?include=space", headers=api.admin)).json()
    assert one["included"] == {"spaces": [listed["included"]["spaces"][0]]}
    by_org = (
        await api.http.get(f"/v3/apps?organization_guids={org['guid']}", headers=api.admin)
    ).json()
    assert by_org["pagination"]["total_results"] == 1


async def test_start_stop_restart(api: Api) -> None:
    org = await api.org()
    app = await api.app((await api.space(org["guid"]))["guid"])
    refused = await api.http.post(app["links"]["start"]["href"], headers=api.admin)
    assert refused.status_code == 422
    assert refused.json()["errors"][0] == {
        "code": 10008,
        "title": "CF-UnprocessableEntity",
        "detail": "Assign a droplet before starting this app.",
    }
    await api.droplet(app["guid"])
    before = (await api.http.get(f"/v3/apps/{app['guid']}/processes/web", headers=api.admin)).json()
    started = await api.http.post(app["links"]["start"]["href"], headers=api.admin)
    assert started.status_code == 200 and started.json()["state"] == "STARTED"
    again = await api.http.post(app["links"]["start"]["href"], headers=api.admin)
    assert again.json()["state"] == "STARTED"
    restarted = await api.http.post(f"/v3/apps/{app['guid']}/actions/restart", headers=api.admin)
    assert restarted.json()["state"] == "STARTED"
    after = (await api.http.get(f"/v3/apps/{app['guid']}/processes/web", headers=api.admin)).json()
    assert after["version"] != before["version"]
    stopped = await api.http.post(app["links"]["stop"]["href"], headers=api.admin)
    assert stopped.json()["state"] == "STOPPED"
    types = [
        e["type"]
        for e in (
            await api.http.get(f"/v3/audit_events?target_guids={app['guid']}", headers=api.admin)
        ).json()["resources"]
    ]
    assert types == [
        "audit.app.create",
        "audit.app.droplet.create",
        "audit.app.droplet.upload",
        "audit.app.droplet.mapped",
        "audit.app.start",
        "audit.app.start",
        "audit.app.restart",
        "audit.app.stop",
    ]


async def test_scale_and_update_process(api: Api) -> None:
    org = await api.org()
    app = await api.app((await api.space(org["guid"]))["guid"])
    web = (await api.http.get(f"/v3/apps/{app['guid']}/processes/web", headers=api.admin)).json()
    scaled = await api.http.post(
        web["links"]["scale"]["href"], headers=api.admin, json={"instances": 3, "memory_in_mb": 512}
    )
    assert scaled.status_code == 202 and "location" not in scaled.headers
    assert (scaled.json()["instances"], scaled.json()["memory_in_mb"]) == (3, 512)
    alias = await api.http.post(
        f"/v3/apps/{app['guid']}/processes/web/actions/scale",
        headers=api.admin,
        json={"disk_in_mb": 2048},
    )
    assert alias.status_code == 202 and alias.json()["disk_in_mb"] == 2048
    updated = await api.http.patch(
        f"/v3/processes/{web['guid']}",
        headers=api.admin,
        json={
            "command": "python app.py --secret-flag",
            "health_check": {"type": "http", "data": {"endpoint": "/health", "timeout": 30}},
        },
    )
    assert updated.status_code == 200
    assert updated.json()["health_check"] == {
        "type": "http",
        "data": {
            "timeout": 30,
            "invocation_timeout": None,
            "interval": None,
            "endpoint": "/health",
        },
    }
    assert updated.json()["command"] == "python app.py --secret-flag"
    listed = (
        await api.http.get(f"/v3/processes?app_guids={app['guid']}", headers=api.admin)
    ).json()
    assert listed["resources"][0]["command"] == "[PRIVATE DATA HIDDEN IN LISTS]"
    reset = await api.http.patch(
        f"/v3/processes/{web['guid']}", headers=api.admin, json={"command": None}
    )
    assert reset.json()["command"] is None


async def test_environment_variables_and_env(api: Api) -> None:
    org = await api.org()
    space = await api.space(org["guid"])
    app = await api.app(space["guid"])
    url = f"/v3/apps/{app['guid']}/environment_variables"
    patched = await api.http.patch(
        url, headers=api.admin, json={"var": {"DB_PASSWORD": "hunter2", "MODE": "fast"}}
    )
    assert patched.status_code == 200 and patched.json()["var"] == {
        "DB_PASSWORD": "hunter2",
        "MODE": "fast",
    }
    removed = await api.http.patch(url, headers=api.admin, json={"var": {"MODE": None}})
    assert removed.json()["var"] == {"DB_PASSWORD": "hunter2"}
    env = (await api.http.get(f"/v3/apps/{app['guid']}/env", headers=api.admin)).json()
    assert env["environment_variables"] == {"DB_PASSWORD": "hunter2"}
    vcap = env["application_env_json"]["VCAP_APPLICATION"]
    assert vcap["application_name"] == "web" and vcap["space_name"] == "dev"
    assert vcap["organization_name"] == "acme" and vcap["limits"]["mem"] == 256
    assert env["system_env_json"] == {"VCAP_SERVICES": {}}
    for reserved in ({"VCAP_SERVICES": "x"}, {"PORT": "1"}, {"1BAD": "x"}, {"X": {"a": 1}}):
        refused = await api.http.patch(url, headers=api.admin, json={"var": reserved})
        assert refused.status_code == 422, reserved
    events = (
        await api.http.get(f"/v3/audit_events?target_guids={app['guid']}", headers=api.admin)
    ).text
    assert "hunter2" not in events and "[PRIVATE DATA HIDDEN]" in events


@pytest.mark.parametrize("kind", ["app", "space", "organization"])
async def test_deletes_are_jobs(api: Api, kind: str) -> None:
    org = await api.org()
    space = await api.space(org["guid"])
    app = await api.app(space["guid"])
    target = {
        "app": f"/v3/apps/{app['guid']}",
        "space": f"/v3/spaces/{space['guid']}",
        "organization": f"/v3/organizations/{org['guid']}",
    }[kind]
    response = await api.http.delete(target, headers=api.admin)
    assert response.status_code == 202 and response.content == b""
    location = response.headers["location"]
    assert location.startswith(f"{BASE}/v3/jobs/")
    again = await api.http.delete(target, headers=api.admin)
    job = await api.wait_job(location)
    assert job["state"] == "COMPLETE", job
    assert job["operation"] == f"{kind}.delete" and job["errors"] == []
    assert again.status_code in (202, 404)
    assert (await api.http.get(target, headers=api.admin)).status_code == 404
    assert (await api.http.get(f"/v3/apps/{app['guid']}", headers=api.admin)).status_code == 404
    detail = (
        await api.http.get(f"/v3/x/jobs/{location.rsplit('/', 1)[1]}", headers=api.admin)
    ).json()
    assert all(stage["state"] == "COMPLETE" for stage in detail["stages"])
    assert detail["queue"] == "deletes" and detail["attempts"] == 1


async def test_second_delete_while_pending_returns_the_same_job(api: Api) -> None:
    org = await api.org()
    app = await api.app((await api.space(org["guid"]))["guid"])
    await api.parts.engine.stop()  # nothing runs: the first job stays pending
    first = await api.http.delete(f"/v3/apps/{app['guid']}", headers=api.admin)
    second = await api.http.delete(f"/v3/apps/{app['guid']}", headers=api.admin)
    assert first.headers["location"] == second.headers["location"]
    job = (await api.http.get(first.headers["location"], headers=api.admin)).json()
    assert job["state"] == "PROCESSING" and job["links"]["app"]["href"].endswith(app["guid"])
    await api.parts.engine.start()
    assert (await api.wait_job(first.headers["location"]))["state"] == "COMPLETE"


async def test_queues_are_visible_and_tunable(api: Api) -> None:
    queues = (await api.http.get("/v3/x/queues", headers=api.admin)).json()["resources"]
    names = {queue["name"]: queue for queue in queues}
    assert {"default", "deletes", "staging"} <= set(names)
    patched = await api.http.patch(
        "/v3/x/queues/deletes", headers=api.admin, json={"concurrency": 7}
    )
    assert patched.status_code == 200 and patched.json()["concurrency"] == 7
    zero = await api.http.patch("/v3/x/queues/deletes", headers=api.admin, json={"concurrency": 0})
    assert zero.status_code == 422
    missing = await api.http.patch("/v3/x/queues/nope", headers=api.admin, json={"concurrency": 2})
    assert missing.status_code == 404


async def test_request_ids_are_echoed(api: Api) -> None:
    response = await api.http.get("/v3", headers={"X-Request-Id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.headers["x-vcap-request-id"] == "abc-123"
    hostile = await api.http.get("/v3", headers={"X-Request-Id": "bad id\twith spaces"})
    assert hostile.headers["x-request-id"] != "bad id\twith spaces"


async def test_full_flow_on_postgres(api_on_postgres: Api) -> None:
    api = api_on_postgres
    org = await api.org()
    space = await api.space(org["guid"])
    app = await api.app(space["guid"])
    web = (await api.http.get(f"/v3/apps/{app['guid']}/processes/web", headers=api.admin)).json()
    scaled = await api.http.post(
        web["links"]["scale"]["href"], headers=api.admin, json={"instances": 2}
    )
    assert scaled.json()["instances"] == 2
    response = await api.http.delete(f"/v3/organizations/{org['guid']}", headers=api.admin)
    assert (await api.wait_job(response.headers["location"]))["state"] == "COMPLETE"
    assert (await api.http.get(f"/v3/apps/{app['guid']}", headers=api.admin)).status_code == 404


async def test_every_v3_root_collection_answers(api: Api) -> None:
    links = (await api.http.get("/v3")).json()["links"]
    assert {"apps", "builds", "buildpacks", "droplets", "packages", "routes"} <= set(links)
    for name, link in links.items():
        if name in ("self", "info", "resource_matches"):  # resource_matches is POST-only
            continue
        response = await api.http.get(link["href"], headers=api.admin)
        assert response.status_code == 200, (name, response.text)
        assert "resources" in response.json(), name

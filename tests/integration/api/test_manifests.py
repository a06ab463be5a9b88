"""POST /v3/spaces/:g/actions/apply_manifest and GET /v3/apps/:g/manifest: CF's additive
semantics (apps created or updated, processes scaled, env merged, routes created and mapped),
refusals before anything changes, and the round trip from an app to its manifest and back."""

from __future__ import annotations

from typing import Any

import yaml

from tests.integration.api.conftest import Api

YAML = {"Content-Type": "application/x-yaml"}

FULL = """\
applications:
- name: shop
  instances: 2
  memory: 256M
  disk_quota: 512M
  buildpacks: [python]
  command: python app.py
  health-check-type: http
  health-check-http-endpoint: /health
  timeout: 30
  env:
    GREETING: hello
    API_TOKEN: s3cret
  routes:
  - route: shop.apps.localhost
  - route: shop.apps.localhost/admin
    options: {loadbalancing: least-connection}
  metadata:
    labels: {team: blue}
  processes:
  - type: worker
    instances: 1
    memory: 128M
    command: python worker.py
    health-check-type: process
- name: docs
  no-route: true
"""


async def _apply(api: Api, space_guid: str, text: str, expect: int = 202) -> Any:
    response = await api.http.post(
        f"/v3/spaces/{space_guid}/actions/apply_manifest",
        content=text.encode(),
        headers={**api.admin, **YAML},
    )
    assert response.status_code == expect, response.text
    if expect != 202:
        return response.json()
    job = await api.wait_job(response.headers["Location"])
    return job


async def _get(api: Api, path: str) -> dict[str, Any]:
    response = await api.http.get(path, headers=api.admin)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _app(api: Api, space_guid: str, name: str) -> dict[str, Any]:
    found = await _get(api, f"/v3/apps?names={name}&space_guids={space_guid}")
    (app,) = found["resources"]
    return dict(app)


async def _setup(api: Api) -> dict[str, Any]:
    org = await api.org("acme")
    return await api.space(org["guid"], "dev")


async def test_apply_creates_apps_processes_and_routes(api: Api) -> None:
    space = await _setup(api)
    job = await _apply(api, space["guid"], FULL)
    assert job["state"] == "COMPLETE", job
    shop = await _app(api, space["guid"], "shop")
    assert shop["lifecycle"]["data"]["buildpacks"] == ["python"]
    assert shop["metadata"]["labels"] == {"team": "blue"}
    web = await _get(api, f"/v3/apps/{shop['guid']}/processes/web")
    assert (web["instances"], web["memory_in_mb"], web["disk_in_mb"]) == (2, 256, 512)
    assert web["command"] == "python app.py"
    assert web["health_check"]["type"] == "http"
    assert web["health_check"]["data"]["endpoint"] == "/health"
    assert web["health_check"]["data"]["timeout"] == 30
    worker = await _get(api, f"/v3/apps/{shop['guid']}/processes/worker")
    assert (worker["instances"], worker["memory_in_mb"]) == (1, 128)
    assert worker["health_check"]["type"] == "process"
    env = await _get(api, f"/v3/apps/{shop['guid']}/environment_variables")
    assert env["var"] == {"GREETING": "hello", "API_TOKEN": "s3cret"}
    routes = await _get(api, f"/v3/apps/{shop['guid']}/routes")
    urls = sorted(route["url"] for route in routes["resources"])
    assert urls == ["shop.apps.localhost", "shop.apps.localhost/admin"]
    admin = next(r for r in routes["resources"] if r["path"] == "/admin")
    assert admin["options"] == {"loadbalancing": "least-connection"}
    vcap = (await _get(api, f"/v3/apps/{shop['guid']}/env"))["application_env_json"]
    assert sorted(vcap["VCAP_APPLICATION"]["application_uris"]) == urls
    docs = await _app(api, space["guid"], "docs")
    assert (await _get(api, f"/v3/apps/{docs['guid']}/routes"))["resources"] == []


async def test_apply_is_additive_and_idempotent(api: Api) -> None:
    space = await _setup(api)
    await _apply(api, space["guid"], FULL)
    second = """\
applications:
- name: shop
  instances: 3
  env: {EXTRA: "1"}
  routes:
  - route: shop-two.apps.localhost
"""
    job = await _apply(api, space["guid"], second)
    assert job["state"] == "COMPLETE", job
    await _apply(api, space["guid"], second)  # again: nothing is duplicated
    shop = await _app(api, space["guid"], "shop")
    web = await _get(api, f"/v3/apps/{shop['guid']}/processes/web")
    assert (web["instances"], web["memory_in_mb"]) == (3, 256)  # memory left as it was
    env = await _get(api, f"/v3/apps/{shop['guid']}/environment_variables")
    assert env["var"] == {"GREETING": "hello", "API_TOKEN": "s3cret", "EXTRA": "1"}
    routes = await _get(api, f"/v3/apps/{shop['guid']}/routes")
    assert len(routes["resources"]) == 3
    apps = await _get(api, f"/v3/apps?space_guids={space['guid']}")
    assert sorted(app["name"] for app in apps["resources"]) == ["docs", "shop"]


async def test_default_and_random_routes(api: Api) -> None:
    space = await _setup(api)
    text = """\
applications:
- name: My_App
  default-route: true
- name: lucky
  random-route: true
"""
    assert (await _apply(api, space["guid"], text))["state"] == "COMPLETE"
    mine = await _app(api, space["guid"], "My_App")
    (route,) = (await _get(api, f"/v3/apps/{mine['guid']}/routes"))["resources"]
    assert route["url"] == "my-app.apps.localhost"
    lucky = await _app(api, space["guid"], "lucky")
    (route,) = (await _get(api, f"/v3/apps/{lucky['guid']}/routes"))["resources"]
    assert route["host"].startswith("lucky-") and route["host"] != "lucky"
    # Applied again, an app that has a route gets no second one.
    await _apply(api, space["guid"], text)
    assert len((await _get(api, f"/v3/apps/{lucky['guid']}/routes"))["resources"]) == 1


async def test_no_route_unmaps_every_route(api: Api) -> None:
    space = await _setup(api)
    await _apply(api, space["guid"], FULL)
    await _apply(api, space["guid"], "applications:\n- name: shop\n  no-route: true\n")
    shop = await _app(api, space["guid"], "shop")
    assert (await _get(api, f"/v3/apps/{shop['guid']}/routes"))["resources"] == []


async def test_bad_manifests_are_refused_before_anything_is_created(api: Api) -> None:
    space = await _setup(api)
    cases = {
        "applications:\n- name: a\n  memroy: 1G\n": "line 3",
        "applications:\n- name: a\n  memory: 12Q\n": "invalid memory",
        "applications:\n- name: a\n- name: a\n": "a",
        "applications:\n- name: a\n  routes:\n  - route: a.nowhere.example\n": "did not match",
        "applications:\n- name: a\n  buildpacks: [cobol]\n": "cobol",
        "applications:\n- name: a\n  stack: windows\n": "windows",
        "applications:\n- name: a\n  services: [db]\n": "Service instance 'db' not found",
        "applications: [\n": "line",
        "applications:\n- name: a\n  instances: 100000000\n": "Instances must be between",
        "applications:\n- name: a\n  timeout: 999999\n": "timeout must be between",
        "applications:\n- name: a\n  processes:\n  - type: w\n    memory: 9999T\n": "Memory",
        "x: &x [1, 2]\ny: [*x, *x]\n": "aliases",
        "- just a list\n": "",
    }
    for text, fragment in cases.items():
        body = await _apply(api, space["guid"], text, expect=422)
        (error,) = body["errors"]
        assert error["title"] == "CF-UnprocessableEntity", (text, body)
        assert fragment in error["detail"], (text, error["detail"])
    apps = await _get(api, f"/v3/apps?space_guids={space['guid']}")
    assert apps["resources"] == []


async def test_apply_needs_yaml_and_a_writable_space(api: Api) -> None:
    space = await _setup(api)
    response = await api.http.post(
        f"/v3/spaces/{space['guid']}/actions/apply_manifest",
        json={"applications": [{"name": "a"}]},
        headers=api.admin,
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["title"] == "CF-InvalidRequest"
    response = await api.http.post(
        f"/v3/spaces/{space['guid']}/actions/apply_manifest",
        content=b"\xff\xfe",
        headers={**api.admin, **YAML},
    )
    assert response.status_code == 400, response.text
    response = await api.http.post(
        "/v3/spaces/no-such-space/actions/apply_manifest",
        content=b"applications:\n- name: a\n",
        headers={**api.admin, **YAML},
    )
    assert response.status_code == 404, response.text
    _, auditor = await api.user("someone")
    response = await api.http.post(
        f"/v3/spaces/{space['guid']}/actions/apply_manifest",
        content=b"applications:\n- name: a\n",
        headers={**auditor, **YAML},
    )
    assert response.status_code == 404, response.text  # a space it cannot see
    response = await api.http.post(
        f"/v3/spaces/{space['guid']}/actions/apply_manifest",
        content=b"applications:\n- name: a\n" + b"#" * (70 * 1024),
        headers={**api.admin, **YAML},
    )
    assert response.status_code == 413, response.text


async def test_app_manifest_round_trips(api: Api) -> None:
    space = await _setup(api)
    await _apply(api, space["guid"], FULL)
    shop = await _app(api, space["guid"], "shop")
    response = await api.http.get(f"/v3/apps/{shop['guid']}/manifest", headers=api.admin)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-yaml")
    generated = yaml.safe_load(response.text)
    (app,) = generated["applications"]
    assert app["name"] == "shop"
    assert app["env"] == {"GREETING": "hello", "API_TOKEN": "s3cret"}
    assert sorted(entry["route"] for entry in app["routes"]) == [
        "shop.apps.localhost",
        "shop.apps.localhost/admin",
    ]
    types = {process["type"]: process for process in app["processes"]}
    assert types["web"]["instances"] == 2 and types["web"]["memory"] == "256M"
    assert types["worker"]["command"] == "python worker.py"
    # Applying the generated manifest to a new space makes the same app (routes aside: they
    # are taken by the first).
    other = await api.space((await _get(api, "/v3/organizations"))["resources"][0]["guid"], "qa")
    app.pop("routes")
    copy = yaml.safe_dump({"applications": [app]})
    assert (await _apply(api, other["guid"], copy))["state"] == "COMPLETE"
    again = await _app(api, other["guid"], "shop")
    web = await _get(api, f"/v3/apps/{again['guid']}/processes/web")
    assert (web["instances"], web["memory_in_mb"], web["command"]) == (2, 256, "python app.py")

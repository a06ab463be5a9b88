"""Process stats, restarting an instance and /v3/x/cells: shapes, permissions and bad input,
without any cell running (what a user sees before the cells report, or when none fits)."""

from __future__ import annotations

from typing import Any

from tests.integration.api.conftest import Api


async def _app(api: Api) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    org = await api.org()
    space = await api.space(org["guid"])
    app = await api.app(space["guid"])
    response = await api.http.get(f"/v3/apps/{app['guid']}/processes/web", headers=api.admin)
    return space | {"org_guid": org["guid"]}, app, response.json()


def _errors(body: dict[str, Any]) -> list[str]:
    return [error["title"] for error in body["errors"]]


async def test_stats_of_a_stopped_app_are_down_in_cf_shape(api: Api) -> None:
    _, app, process = await _app(api)
    response = await api.http.get(f"/v3/processes/{process['guid']}/stats", headers=api.admin)
    assert response.status_code == 200
    (entry,) = response.json()["resources"]
    assert entry["type"] == "web" and entry["index"] == 0 and entry["state"] == "DOWN"
    assert entry["usage"] == {} and entry["instance_ports"] == []
    assert entry["mem_quota"] == 256 * 1024 * 1024 and entry["disk_quota"] == 1024 * 1024 * 1024
    alias = await api.http.get(f"/v3/apps/{app['guid']}/processes/web/stats", headers=api.admin)
    (aliased,) = alias.json()["resources"]
    assert aliased.keys() == entry.keys() and aliased["state"] == "DOWN"


async def test_stats_of_unknown_or_invisible_processes_are_404(api: Api) -> None:
    _, app, process = await _app(api)
    _, stranger = await api.user("stranger")
    for path in (
        "/v3/processes/no-such-process/stats",
        f"/v3/processes/{process['guid']}/stats",
        f"/v3/apps/{app['guid']}/processes/worker/stats",
    ):
        headers = stranger if path.endswith(f"{process['guid']}/stats") else api.admin
        response = await api.http.get(path, headers=headers)
        assert response.status_code == 404, path
        assert _errors(response.json()) == ["CF-ResourceNotFound"]
    response = await api.http.get(
        f"/v3/processes/{process['guid']}/stats?verbose=1", headers=api.admin
    )
    assert response.status_code == 400


async def test_restart_instance_checks_index_and_role(api: Api) -> None:
    space, _, process = await _app(api)
    base = f"/v3/processes/{process['guid']}/instances"
    for index in ("abc", "-1", "7", "99999999999"):
        response = await api.http.delete(f"{base}/{index}", headers=api.admin)
        assert response.status_code == 404, index
        assert response.json()["errors"][0]["detail"] == "Instance not found"
    auditor_guid, auditor = await api.user("auditor")
    assert (
        await api.role("organization_user", auditor_guid, org=space["org_guid"])
    ).status_code == 201
    assert (await api.role("space_auditor", auditor_guid, space=space["guid"])).status_code == 201
    response = await api.http.delete(f"{base}/0", headers=auditor)
    assert response.status_code == 403
    response = await api.http.delete(f"{base}/0", headers=api.admin)
    assert response.status_code == 204 and response.content == b""


async def test_cells_are_for_admins_and_bad_updates_are_refused(api: Api) -> None:
    listed = await api.http.get("/v3/x/cells", headers=api.admin)
    assert listed.status_code == 200
    assert listed.json()["resources"] == []
    assert listed.json()["pagination"]["total_results"] == 0
    _, someone = await api.user("someone")
    assert (await api.http.get("/v3/x/cells", headers=someone)).status_code == 403
    assert (await api.http.get("/v3/x/cells")).status_code == 401
    missing = await api.http.get("/v3/x/cells/nope", headers=api.admin)
    assert missing.status_code == 404
    for body in ({"state": 5}, {"state": "DISABLED", "zone": "z9"}, {}, ["DISABLED"]):
        response = await api.http.patch("/v3/x/cells/nope", headers=api.admin, json=body)
        assert response.status_code == 422, body
        assert "errors" in response.json()
    response = await api.http.patch(
        "/v3/x/cells/nope", headers=api.admin, json={"state": "DISABLED"}
    )
    assert response.status_code == 404
    bad_filter = await api.http.get("/v3/x/cells?colours=red", headers=api.admin)
    assert bad_filter.status_code == 400

"""The distributed mode: separate controller processes on one PostgreSQL and one NATS."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from overcast.testing.micro import ControllerProcess
from overcast.testing.nats import NatsServer

ADMIN_PASSWORD = "cluster-admin-password"


@pytest.fixture
def cluster(
    tmp_path: Path, postgres_url: str, nats_server: NatsServer
) -> Iterator[list[ControllerProcess]]:
    env = {
        "OVERCAST_STORE__URL": postgres_url,
        "OVERCAST_BUS__KIND": "nats",
        "OVERCAST_BUS__URL": nats_server.url,
        "OVERCAST_AUTH__ADMIN_PASSWORD": ADMIN_PASSWORD,
        "OVERCAST_JOBS__POLL_INTERVAL_SECONDS": "0.1",
        # A killed controller's claimed job must be taken over well within the test's wait.
        "OVERCAST_JOBS__LEASE_SECONDS": "3",
    }
    controllers = [
        ControllerProcess(tmp_path / name, {**env, "OVERCAST_INSTANCE_NAME": name})
        for name in ("ctl-a", "ctl-b")
    ]
    try:
        for controller in controllers:
            controller.start()
        yield controllers
    finally:
        codes = [controller.stop() for controller in controllers]
        assert codes == [0, 0], [c.log_text()[-2000:] for c in controllers]


def _login(api_url: str) -> dict[str, str]:
    response = httpx.post(
        f"{api_url}/oauth/token",
        auth=("cf", ""),
        data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
    )
    response.raise_for_status()
    return {"Authorization": f"bearer {response.json()['access_token']}"}


def _wait_job(api_url: str, location: str, headers: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = httpx.get(
            location.replace(location.split("/v3/")[0], api_url), headers=headers
        ).json()
        if job["state"] in ("COMPLETE", "FAILED"):
            return dict(job)
        time.sleep(0.1)
    raise AssertionError("job did not finish")


def test_two_controllers_share_state_tokens_and_jobs(cluster: list[ControllerProcess]) -> None:
    first, second = (controller.api_url for controller in cluster)
    assert first != second
    headers = _login(first)  # a token from one controller is good at the other
    created = httpx.post(f"{second}/v3/organizations", headers=headers, json={"name": "shared"})
    assert created.status_code == 201, created.text
    org_guid = created.json()["guid"]
    seen = httpx.get(f"{first}/v3/organizations?names=shared", headers=headers).json()
    assert [org["guid"] for org in seen["resources"]] == [org_guid]
    space = httpx.post(
        f"{first}/v3/spaces",
        headers=headers,
        json={"name": "dev", "relationships": {"organization": {"data": {"guid": org_guid}}}},
    )
    assert space.status_code == 201
    for index in range(6):
        app = httpx.post(
            f"{second}/v3/apps",
            headers=headers,
            json={
                "name": f"app-{index}",
                "relationships": {"space": {"data": {"guid": space.json()["guid"]}}},
            },
        )
        assert app.status_code == 201
    deleted = httpx.delete(f"{first}/v3/organizations/{org_guid}", headers=headers)
    assert deleted.status_code == 202
    job = _wait_job(second, deleted.headers["location"], headers)
    assert job["state"] == "COMPLETE", job
    gone = httpx.get(f"{second}/v3/organizations/{org_guid}", headers=headers)
    assert gone.status_code == 404


def test_a_controller_crash_does_not_lose_queued_work(cluster: list[ControllerProcess]) -> None:
    first, second = cluster
    headers = _login(first.api_url)
    org = httpx.post(
        f"{first.api_url}/v3/organizations", headers=headers, json={"name": "doomed"}
    ).json()
    deleted = httpx.delete(f"{first.api_url}/v3/organizations/{org['guid']}", headers=headers)
    first.kill()  # whatever it had claimed, the other controller finishes
    job = _wait_job(second.api_url, deleted.headers["location"], headers)
    assert job["state"] == "COMPLETE"
    first.start()  # so the fixture's clean stop still holds

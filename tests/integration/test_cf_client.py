"""The one real CF v3 client installable here, unchanged, against a running Overcast."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudfoundry_client.client import CloudFoundryClient
from cloudfoundry_client.errors import InvalidStatusCode
from cloudfoundry_client.v3.entities import EntityManager

from overcast.testing.droplets import build_droplet
from overcast.testing.micro import MicroCloud


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MicroCloud]:
    cloud = MicroCloud(tmp_path_factory.mktemp("cf-client") / "data")
    cloud.start()
    try:
        yield cloud
    finally:
        assert cloud.stop() == 0, cloud.log_text()


@pytest.fixture
def client(micro: MicroCloud) -> CloudFoundryClient:
    cf = CloudFoundryClient(micro.api_url, verify=False)
    cf.init_with_user_credentials("admin", micro.admin_password)
    return cf


def test_login_org_space_app_env_scale_delete(client: CloudFoundryClient, tmp_path: Path) -> None:
    org = client.v3.organizations.create("cf-client-org", suspended=False)
    assert org["name"] == "cf-client-org"
    same = client.v3.organizations.get_first(names="cf-client-org")
    assert same["guid"] == org["guid"]
    space = client.v3.spaces.create("dev", org["guid"])
    assert space.organization()["guid"] == org["guid"]  # follows links.organization

    app = client.v3.apps._create(
        {"name": "hello", "relationships": {"space": {"data": {"guid": space["guid"]}}}}
    )
    assert app["state"] == "STOPPED"
    names = [a["name"] for a in client.v3.apps.list(space_guids=space["guid"])]
    assert names == ["hello"]
    assert client.v3.apps.list(names="hello", space_guids=space["guid"]).total_results == 1
    with_space = client.v3.apps.get(app["guid"], include="space")
    assert with_space.space()["guid"] == space["guid"]

    # Droplets through the client's own managers: create, upload (a job), assign.
    droplet = client.v3.droplets.create(app["guid"], process_types={"web": "python3 app.py"})
    assert droplet["state"] == "AWAITING_UPLOAD"
    built = build_droplet(tmp_path / "droplet.tgz")
    uploaded = client.v3.droplets._upload_bits(droplet["guid"], str(built.path))
    assert uploaded["state"] == "PROCESSING_UPLOAD"
    job_guid = uploaded["links"]["job"]["href"].rsplit("/", 1)[-1]
    assert client.v3.jobs.wait_for_job_completion(job_guid, timeout=30)["state"] == "COMPLETE"
    staged = client.v3.droplets.get(droplet["guid"])
    assert staged["checksum"] == {"type": "sha256", "value": built.sha256}
    assert [d["guid"] for d in client.v3.apps.list_droplets(app["guid"])] == [droplet["guid"]]
    client.v3.apps._patch(
        f"{micro_url(client)}/v3/apps/{app['guid']}/relationships/current_droplet",
        {"data": {"guid": droplet["guid"]}},
    )

    started = app.start()
    assert started["state"] == "STARTED"
    stopped = app.stop()
    assert stopped["state"] == "STOPPED"

    # The client's manifest call reads what apply_manifest understands.
    manifest = client.v3.apps.get_manifest(app["guid"])
    assert "name: hello" in manifest and "type: web" in manifest

    env = client.v3.apps.get_env(app["guid"])
    assert env["application_env_json"]["VCAP_APPLICATION"]["application_name"] == "hello"

    web = next(iter(app.processes()))
    assert web["type"] == "web"
    scaled = web.scale(data={"instances": 3, "memory_in_mb": 512})
    assert (scaled["instances"], scaled["memory_in_mb"]) == (3, 512)
    assert client.v3.processes.get(web["guid"])["instances"] == 3

    job_guid = client.v3.apps.remove(app["guid"])
    assert job_guid
    job = client.v3.jobs.wait_for_job_completion(job_guid, timeout=30)
    assert job["state"] == "COMPLETE"
    with pytest.raises(InvalidStatusCode) as missing:
        client.v3.apps.get(app["guid"])
    assert missing.value.status_code.value == 404

    client.v3.organizations.remove(org["guid"], asynchronous=False)
    assert client.v3.organizations.get_first(names="cf-client-org") is None


def micro_url(client: CloudFoundryClient) -> str:
    return str(client.v3.apps.target_endpoint).rstrip("/")


def test_pagination_is_followed(client: CloudFoundryClient) -> None:
    for index in range(7):
        client.v3.organizations.create(f"page-{index}", suspended=False)
    listed = [org["name"] for org in client.v3.organizations.list(per_page=2, order_by="name")]
    assert [name for name in listed if name.startswith("page-")] == [f"page-{i}" for i in range(7)]


def test_expired_token_is_refreshed_by_the_client(
    client: CloudFoundryClient, micro: MicroCloud
) -> None:
    # A token the server no longer accepts: the client must see CF-InvalidAuthToken (1000),
    # refresh with its refresh token and retry.
    client._access_token = "not-a-valid-token"  # type: ignore[attr-defined]
    assert client.v3.organizations.get_first(names="nothing-here") is None
    assert client._access_token != "not-a-valid-token"  # type: ignore[attr-defined]


def test_errors_reach_the_client_in_cf_shape(client: CloudFoundryClient) -> None:
    client.v3.organizations.create("dup-org", suspended=False)
    with pytest.raises(InvalidStatusCode) as duplicate:
        client.v3.organizations.create("dup-org", suspended=False)
    assert duplicate.value.status_code.value == 422
    assert duplicate.value.body["errors"][0]["title"] == "CF-UniquenessError"


def test_users_and_roles_through_generic_managers(client: CloudFoundryClient) -> None:
    # Its generic EntityManager is how a cloudfoundry-client user reaches users and roles.
    endpoint = client.v3.apps.target_endpoint
    users = EntityManager(endpoint, client, "/v3/users")
    roles = EntityManager(endpoint, client, "/v3/roles")
    user = users._create({"username": "carol", "password": "carol-password-1"})
    org = client.v3.organizations.create("roles-org", suspended=False)
    role = roles._create(
        {
            "type": "organization_manager",
            "relationships": {
                "user": {"data": {"guid": user["guid"]}},
                "organization": {"data": {"guid": org["guid"]}},
            },
        }
    )
    assert role["type"] == "organization_manager"
    listed = list(roles.list(user_guids=user["guid"]))
    assert [r["guid"] for r in listed] == [role["guid"]]
    assert role.user()["username"] == "carol"  # follows links.user
    job_guid = roles._remove(role["guid"])
    assert client.v3.jobs.wait_for_job_completion(job_guid, timeout=30)["state"] == "COMPLETE"
    assert list(roles.list(user_guids=user["guid"])) == []

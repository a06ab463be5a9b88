"""cloudfoundry-client, unchanged, on routes and domains: its managers' bodies (a null
`relationships.organization`, `ToOneRelationship`s, `options.loadbalancing`) are accepted and
its entities navigate our links."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cloudfoundry_client.client import CloudFoundryClient
from cloudfoundry_client.v3.entities import ToOneRelationship
from cloudfoundry_client.v3.routes import LoadBalancing

from overcast.testing.micro import MicroCloud


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MicroCloud]:
    cloud = MicroCloud(tmp_path_factory.mktemp("cf-client-routes") / "data")
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


def test_domains_routes_and_destinations(client: CloudFoundryClient) -> None:
    org = client.v3.organizations.create("routes-org", suspended=False)
    space = client.v3.spaces.create("dev", org["guid"])
    app = client.v3.apps._create(
        {"name": "hello", "relationships": {"space": {"data": {"guid": space["guid"]}}}}
    )
    shared = client.v3.domains.create("shared.example.com")
    assert shared["relationships"]["organization"]["data"]["guid"] is None  # client-parsed
    private = client.v3.domains.create(
        "acme.example.com", organization=ToOneRelationship(org["guid"])
    )
    assert private["relationships"]["organization"]["data"]["guid"] == org["guid"]
    names = sorted(d["name"] for d in client.v3.organizations.list_domains(org["guid"]))
    assert "acme.example.com" in names and "shared.example.com" in names
    default = client.v3.organizations.get_default_domain(org["guid"])
    assert default["name"] in names

    route = client.v3.routes.create(
        space["guid"],
        shared["guid"],
        host="shop",
        path="/cart",
        load_balancing=LoadBalancing.LEAST_CONNECTION,
    )
    assert route["url"] == "shop.shared.example.com/cart"
    assert route["options"] == {"loadbalancing": "least-connection"}
    assert route.space()["guid"] == space["guid"]  # follows links.space
    assert route.domain()["guid"] == shared["guid"]  # follows links.domain
    assert [r["guid"] for r in client.v3.routes.list(hosts="shop")] == [route["guid"]]

    mapped = client.v3.routes._post(
        route["links"]["destinations"]["href"],
        data={"destinations": [{"app": {"guid": app["guid"], "process": {"type": "web"}}}]},
    )
    assert mapped["destinations"][0]["app"]["guid"] == app["guid"]
    assert [r["guid"] for r in client.v3.apps.list_routes(app["guid"])] == [route["guid"]]

    job_guid = client.v3.routes.remove(route["guid"])  # the job's guid
    assert client.v3.jobs.wait_for_job_completion(job_guid, timeout=30)["state"] == "COMPLETE"
    assert list(client.v3.routes.list(hosts="shop")) == []
    client.v3.domains._remove(private["guid"], asynchronous=False)
    assert [d["name"] for d in client.v3.domains.list(names="acme.example.com")] == []

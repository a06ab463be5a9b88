"""The client's builds and buildpacks (create_build, get_build, app_builds, wait_for_build,
list_buildpacks) and the upload progress of upload_package, against httpx.MockTransport."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from overcast.client import JobTimedOut, OvercastClient, Tokens
from overcast.client.resources import Build
from tests.unit.cli.fake_server import API, FakeApi, cf_error, page


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def client_for(api: FakeApi, **kwargs: Any) -> OvercastClient:
    return OvercastClient(
        API, tokens=Tokens("t"), transport=httpx.MockTransport(api.handle), **kwargs
    )


def build(state: str = "STAGING", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "guid": "b1",
        "state": state,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "error": None,
        "lifecycle": {"type": "buildpack", "data": {"buildpacks": [], "stack": None}},
        "package": {"guid": "p1"},
        "droplet": {"guid": "d1"} if state == "STAGED" else None,
        "links": {},
    }
    body.update(extra)
    return body


def created_with(**kwargs: Any) -> dict[str, Any]:
    api = FakeApi()
    bodies: list[dict[str, Any]] = []

    def create(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.read()))
        return httpx.Response(201, json=build())

    api.on("POST", "/v3/builds", create)
    with client_for(api) as client:
        assert client.create_build("p1", **kwargs)["guid"] == "b1"
    return bodies[0]


def test_create_build_bodies() -> None:
    assert created_with() == {"package": {"guid": "p1"}}
    assert created_with(buildpacks=["python", "nodejs"]) == {
        "package": {"guid": "p1"},
        "lifecycle": {"type": "buildpack", "data": {"buildpacks": ["python", "nodejs"]}},
    }
    assert created_with(stack="cflinuxfs4", staging_memory_in_mb=2048, staging_disk_in_mb=4096) == {
        "package": {"guid": "p1"},
        "lifecycle": {"type": "buildpack", "data": {"stack": "cflinuxfs4"}},
        "staging_memory_in_mb": 2048,
        "staging_disk_in_mb": 4096,
    }
    # An empty list is a choice too (CF: detect), so it is sent.
    assert created_with(buildpacks=[])["lifecycle"]["data"] == {"buildpacks": []}


def test_get_build_and_app_builds_with_a_state_filter() -> None:
    api = FakeApi()
    api.on("GET", "/v3/builds/b1", build("STAGED"))
    api.on("GET", "/v3/apps/a1/builds", page([build("STAGED"), build("FAILED", guid="b2")]))
    with client_for(api) as client:
        assert client.get_build("b1")["droplet"] == {"guid": "d1"}
        assert [b["guid"] for b in client.app_builds("a1", states=["STAGED", "FAILED"])] == [
            "b1",
            "b2",
        ]
        assert len(client.app_builds("a1")) == 2
    listed = [r for r in api.requests if r.url.path == "/v3/apps/a1/builds"]
    assert listed[0].url.params["states"] == "STAGED,FAILED"
    assert "states" not in listed[1].url.params


def test_wait_for_build_polls_until_staged_and_shows_every_poll() -> None:
    api = FakeApi()
    states = iter(["STAGING", "STAGING", "STAGING", "STAGING", "STAGED"])
    api.on("GET", "/v3/builds/b1", lambda _r: httpx.Response(200, json=build(next(states))))
    fake = FakeTime()
    seen: list[Build] = []
    with client_for(api, sleep=fake.sleep, clock=fake.clock) as client:
        done = client.wait_for_build("b1", on_poll=seen.append, max_interval=0.3)
    assert done["state"] == "STAGED"
    assert [b["state"] for b in seen] == ["STAGING"] * 4 + ["STAGED"]
    assert fake.sleeps == [0.1, 0.2, 0.3, 0.3]


def test_wait_for_build_returns_a_failed_build() -> None:
    api = FakeApi()
    api.on("GET", "/v3/builds/b1", build("FAILED", error="NoAppDetectedError - no buildpack"))
    with client_for(api) as client:
        failed = client.wait_for_build("b1")
    assert failed["error"] == "NoAppDetectedError - no buildpack"


def test_wait_for_build_gives_up_after_the_timeout() -> None:
    api = FakeApi()
    api.on("GET", "/v3/builds/b1", build("STAGING"))
    fake = FakeTime()
    with (
        client_for(api, sleep=fake.sleep, clock=fake.clock) as client,
        pytest.raises(JobTimedOut, match="still STAGING after 30s"),
    ):
        client.wait_for_build("b1", timeout=30)
    assert fake.now == pytest.approx(30)
    assert max(fake.sleeps) <= 2.0


def test_list_buildpacks_by_name() -> None:
    api = FakeApi()
    api.on("GET", "/v3/buildpacks", page([{"name": "python", "position": 1}]))
    with client_for(api) as client:
        assert [b["name"] for b in client.list_buildpacks(names=["python", "go"])] == ["python"]
        client.list_buildpacks()
    first, second = api.requests
    assert first.url.params["names"] == "python,go"
    assert "names" not in second.url.params


def _zip(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("data.bin", b"\x01" * size)
    return path


def test_upload_package_reports_its_progress(tmp_path: Path) -> None:
    api = FakeApi()
    received: list[bytes] = []

    def upload(request: httpx.Request) -> httpx.Response:
        received.append(request.read())
        return httpx.Response(200, json={"guid": "p1", "state": "PROCESSING_UPLOAD"})

    api.on("POST", "/v3/packages/p1/upload", upload)
    bits = _zip(tmp_path / "app.zip", 300_000)
    sent: list[int] = []
    with client_for(api) as client:
        package = client.upload_package("p1", bits, resources=[], progress=sent.append)
    assert package["state"] == "PROCESSING_UPLOAD"
    total = bits.stat().st_size
    assert sent[-1] == total
    assert sent == sorted(sent) and len(sent) > 2  # in chunks, as it was read
    assert bits.read_bytes() in received[0]


def test_upload_progress_starts_again_when_the_upload_is_retried(tmp_path: Path) -> None:
    """An expired token: the upload is sent twice, and the progress goes back to 0."""
    api = FakeApi()
    answers = iter(
        [
            cf_error(401, 1000, "CF-InvalidAuthToken", "Invalid Auth Token"),
            httpx.Response(200, json={"guid": "p1", "state": "PROCESSING_UPLOAD"}),
        ]
    )
    api.on("POST", "/v3/packages/p1/upload", lambda request: (request.read(), next(answers))[1])
    api.on("GET", "/", {"links": {"login": {"href": "http://login.test"}}})
    api.on(
        "POST",
        "/oauth/token",
        {"access_token": "fresh", "token_type": "bearer", "refresh_token": "r"},
    )
    bits = _zip(tmp_path / "app.zip", 1000)
    sent: list[int] = []
    with OvercastClient(
        API, tokens=Tokens("old", "r"), transport=httpx.MockTransport(api.handle)
    ) as client:
        client.upload_package("p1", bits, progress=sent.append)
    total = bits.stat().st_size
    assert sent.count(0) == 2
    assert sent[-1] == total
    uploads = [r for r in api.requests if r.url.path == "/v3/packages/p1/upload"]
    assert [r.headers["authorization"].split()[1] for r in uploads] == ["old", "fresh"]

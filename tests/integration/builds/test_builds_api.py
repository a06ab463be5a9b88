"""Builds and buildpacks over the API: CF shapes, bad input (422/403/404, never 500), the signed
staging URLs, and builds that fail for reasons outside the buildpack (a lost cell, the time
limit, a hostile buildpack archive, a path the cell does not allow)."""

from __future__ import annotations

import asyncio
import io
import stat
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from overcast.testing.platform import (
    Platform,
    eventually,
    memory_buses,
    start_platform,
    zip_directory,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _buildpack_zip(scripts: dict[str, str], extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in scripts.items():
            info = zipfile.ZipInfo(f"bin/{name}")
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            archive.writestr(info, text)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


SLEEPY = {
    "detect": "#!/bin/sh\necho sleepy\n",
    "compile": "#!/bin/sh\necho 'compiling slowly'\nsleep 60\n",
    "release": "#!/bin/sh\necho '--- {}'\n",
}


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = response.json()["errors"]
    assert errors and {"code", "title", "detail"} <= set(errors[0])
    return errors


async def _package(platform: Platform, name: str = "web") -> tuple[dict[str, Any], str]:
    space = await platform.space()
    app = await platform.create_app(space, name)
    package = await platform.upload_package(app["guid"], zip_directory(EXAMPLES / "stdlib"))
    return app, package["guid"]


async def test_build_resource_has_cf_shape(memory_platform: Platform) -> None:
    platform = memory_platform
    app, package_guid = await _package(platform)
    created = (await platform.post("/v3/builds", {"package": {"guid": package_guid}})).json()
    assert created["state"] == "STAGING"
    assert created["droplet"] is None
    assert created["package"] == {"guid": package_guid}
    assert created["relationships"]["app"]["data"]["guid"] == app["guid"]
    assert created["created_by"]["name"] == "admin"
    assert created["lifecycle"] == {
        "type": "buildpack",
        "data": {"buildpacks": [], "stack": "overcast-linux"},
    }
    assert created["staging_memory_in_mb"] == 1024
    assert created["links"]["self"]["href"].endswith(f"/v3/builds/{created['guid']}")

    async def staged() -> dict[str, Any] | None:
        build: dict[str, Any] = await platform.get(f"/v3/builds/{created['guid']}")
        return build if build["state"] != "STAGING" else None

    build = await eventually(staged, within=120)
    assert build["state"] == "STAGED", build["error"]
    droplet_guid = build["droplet"]["guid"]
    assert build["links"]["droplet"]["href"].endswith(f"/v3/droplets/{droplet_guid}")
    listed = await platform.get(f"/v3/apps/{app['guid']}/builds?states=STAGED")
    assert [b["guid"] for b in listed["resources"]] == [created["guid"]]
    everywhere = await platform.get(f"/v3/builds?package_guids={package_guid}")
    assert everywhere["pagination"]["total_results"] == 1
    droplets = await platform.get(f"/v3/packages/{package_guid}/droplets")
    assert [d["guid"] for d in droplets["resources"]] == [droplet_guid]
    patched = await platform.request(
        "PATCH",
        f"/v3/builds/{created['guid']}",
        json={"metadata": {"labels": {"release": "one"}}},
    )
    assert patched.json()["metadata"]["labels"] == {"release": "one"}
    events = await platform.get(f"/v3/audit_events?target_guids={app['guid']}")
    types = {event["type"] for event in events["resources"]}
    assert {"audit.app.build.create", "audit.app.droplet.create"} <= types


async def test_buildpacks_are_listed_in_detection_order(memory_platform: Platform) -> None:
    body = await memory_platform.get("/v3/buildpacks")
    names = [item["name"] for item in body["resources"]]
    assert names == ["python", "nodejs", "static", "procfile"]
    first = body["resources"][0]
    assert first["position"] == 1 and first["state"] == "READY" and first["enabled"] is True
    one = await memory_platform.get(f"/v3/buildpacks/{first['guid']}")
    assert one["name"] == "python"
    filtered = await memory_platform.get("/v3/buildpacks?names=static")
    assert [item["name"] for item in filtered["resources"]] == ["static"]
    await memory_platform.request("GET", "/v3/buildpacks/nope", expect=404)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({}, 422, "package"),
        ({"package": {"guid": "no-such-package"}}, 422, "Unable to use package"),
        ({"package": {"guid": 7}}, 422, "guid"),
        ({"package": {"guid": "x"}, "surprise": 1}, 422, "surprise"),
        ({"package": {"guid": "x"}, "staging_memory_in_mb": "a lot"}, 422, "staging_memory"),
    ],
)
async def test_bad_build_requests(
    memory_platform: Platform, body: dict[str, Any], status: int, fragment: str
) -> None:
    response = await memory_platform.request("POST", "/v3/builds", json=body, expect=status)
    assert fragment in str(_errors(response))


async def test_builds_refused_for_the_package_or_lifecycle(memory_platform: Platform) -> None:
    platform = memory_platform
    app, package_guid = await _package(platform)
    cases = [
        ({"staging_memory_in_mb": 10**6}, "Staging memory"),
        ({"staging_disk_in_mb": 0}, "Staging disk"),
        ({"lifecycle": {"type": "docker", "data": {}}}, "not supported"),
        ({"lifecycle": {"type": "buildpack", "data": {"stack": "windows"}}}, "windows"),
        (
            {"lifecycle": {"type": "buildpack", "data": {"buildpacks": ["no-such-bp"]}}},
            "must be an existing admin buildpack or a valid git URI",
        ),
    ]
    for extra, fragment in cases:
        response = await platform.request(
            "POST", "/v3/builds", json={"package": {"guid": package_guid}, **extra}, expect=422
        )
        assert fragment in _errors(response)[0]["detail"], extra
    waiting = (
        await platform.post(
            "/v3/packages",
            {"type": "bits", "relationships": {"app": {"data": {"guid": app["guid"]}}}},
        )
    ).json()
    response = await platform.request(
        "POST", "/v3/builds", json={"package": {"guid": waiting["guid"]}}, expect=422
    )
    assert "only a READY package can be staged" in _errors(response)[0]["detail"]
    await platform.request("GET", "/v3/builds/unknown", expect=404)
    nothing = await platform.get("/v3/builds")
    assert nothing["resources"] == []


async def test_staging_urls_need_a_valid_signature(memory_platform: Platform) -> None:
    platform = memory_platform
    _, package_guid = await _package(platform)
    build = (await platform.post("/v3/builds", {"package": {"guid": package_guid}})).json()
    async with httpx.AsyncClient(base_url=platform.api_url) as http:
        for path in (
            f"/v3/x/staging/{build['guid']}/droplet",
            f"/v3/x/staging/{build['guid']}/failure",
            f"/v3/x/staging/{build['guid']}/failure?expires=1&signature=" + "0" * 64,
        ):
            response = await http.post(path, content=b"{}")
            assert response.status_code == 403, path
            assert _errors(response)[0]["code"] == 10003
    # A signed failure URL with a malformed report: 422, and the build is untouched.
    urls = platform.parts.controller.builds.urls
    signed = await urls.url(f"/v3/x/staging/{build['guid']}/failure", "POST")
    async with httpx.AsyncClient() as http:
        for body in (b"not json", b"[]", b'{"reason": 1, "detail": "x"}'):
            response = await http.post(signed, content=body)
            assert response.status_code == 422, body
    # ... and a well-formed one fails it, naming the reason CF knows.
    async with httpx.AsyncClient() as http:
        response = await http.post(
            signed, json={"reason": "Whatever", "detail": "the cell's disk is full"}
        )
    assert response.status_code == 200
    failed = await platform.get(f"/v3/builds/{build['guid']}")
    if failed["state"] == "FAILED":  # unless the cell was quicker
        assert failed["error"] == "StagingError - the cell's disk is full"


async def test_a_hostile_buildpack_archive_fails_the_build_naming_the_entry(
    memory_platform: Platform, tmp_path: Path
) -> None:
    platform = memory_platform
    archive = tmp_path / "evil-buildpack.zip"
    archive.write_bytes(_buildpack_zip(SLEEPY, extra={"../escape.sh": b"echo pwned"}))
    space = await platform.space()
    _, build = await platform.push_source(
        space, "evil", EXAMPLES / "stdlib", buildpacks=[f"file://{archive}"]
    )
    assert build["state"] == "FAILED"
    assert build["error"].startswith("BuildpackDownloadFailed - ")
    assert '"../escape.sh"' in build["error"]
    assert not (tmp_path / "escape.sh").exists()
    cell_dir = platform.cell_dir("cell-a")
    assert not list(cell_dir.rglob("escape.sh"))


async def test_a_zip_buildpack_by_url_stages(memory_platform: Platform, tmp_path: Path) -> None:
    platform = memory_platform
    archive = tmp_path / "tiny-buildpack.zip"
    archive.write_bytes(
        _buildpack_zip(
            {
                "detect": "#!/bin/sh\necho tiny\n",
                "compile": "#!/bin/sh\necho 'tiny compile'\n",
                "release": "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n"
                "  web: python3 app.py\\n'\n",
            },
            extra={"VERSION": b"1.2.3\n"},
        )
    )
    space = await platform.space()
    _, build = await platform.push_source(
        space, "tiny", EXAMPLES / "stdlib", buildpacks=[f"file://{archive}"]
    )
    assert build["state"] == "STAGED", build["error"]
    droplet = await platform.get(f"/v3/droplets/{build['droplet']['guid']}")
    assert droplet["buildpacks"][0]["version"] == "1.2.3"


async def test_buildpack_paths_only_from_allowed_directories(tmp_path: Path) -> None:
    allowed = tmp_path / "operator-buildpacks"
    installed = allowed / "shell"
    (installed / "bin").mkdir(parents=True)
    for name, text in {
        "detect": "#!/bin/sh\necho shell\n",
        "compile": "#!/bin/sh\necho 'operator buildpack'\n",
        "release": (
            "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  web: python3 app.py\\n'\n"
        ),
    }.items():
        (installed / "bin" / name).write_text(text)
        (installed / "bin" / name).chmod(0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    platform = await start_platform(tmp_path / "platform", make_bus=memory_buses())
    try:
        await platform.add_cell("cell-a", buildpack_paths=[str(allowed)])
        await platform.wait_for_cells(1)
        space = await platform.space()
        _, good = await platform.push_source(
            space, "ok", EXAMPLES / "stdlib", buildpacks=[str(installed)]
        )
        assert good["state"] == "STAGED", good["error"]
        _, bad = await platform.push_source(
            space, "no", EXAMPLES / "stdlib", buildpacks=[str(elsewhere)]
        )
        assert bad["state"] == "FAILED"
        assert bad["error"].startswith("BuildpackNotFound - ")
    finally:
        await platform.close()


async def test_staging_time_limit(tmp_path: Path) -> None:
    archive = tmp_path / "sleepy.zip"
    archive.write_bytes(_buildpack_zip(SLEEPY))
    platform = await start_platform(
        tmp_path / "platform",
        make_bus=memory_buses(),
        staging={"timeout_seconds": 2.0, "poll_interval_seconds": 0.2},
    )
    try:
        await platform.add_cell("cell-a")
        await platform.wait_for_cells(1)
        space = await platform.space()
        _, build = await platform.push_source(
            space, "slow", EXAMPLES / "stdlib", buildpacks=[f"file://{archive}"]
        )
        assert build["state"] == "FAILED"
        assert build["error"].startswith("StagingTimeExpired - ")
        assert platform.cells["cell-a"].heartbeat().staging == []
    finally:
        await platform.close()


async def test_a_cell_lost_while_staging_fails_the_build(tmp_path: Path) -> None:
    archive = tmp_path / "sleepy.zip"
    archive.write_bytes(_buildpack_zip(SLEEPY))
    platform = await start_platform(tmp_path / "platform", make_bus=memory_buses())
    try:
        await platform.add_cell("cell-a")
        await platform.wait_for_cells(1)
        space = await platform.space()
        app = await platform.create_app(space, "orphan", buildpacks=[f"file://{archive}"])
        package = await platform.upload_package(app["guid"], zip_directory(EXAMPLES / "stdlib"))
        build = (await platform.post("/v3/builds", {"package": {"guid": package["guid"]}})).json()

        async def compiling() -> bool:
            return build["guid"] in platform.cells["cell-a"].heartbeat().staging

        await eventually(compiling, within=30)
        await asyncio.sleep(0.5)
        # The cell goes away without a word (a crash, not a shutdown it could report).
        agent = platform.cells.pop("cell-a")
        await platform._cell_buses.pop("cell-a").close()

        async def failed() -> dict[str, Any] | None:
            current: dict[str, Any] = await platform.get(f"/v3/builds/{build['guid']}")
            return current if current["state"] == "FAILED" else None

        result = await eventually(failed, within=30)
        assert result["error"].startswith("StagingError - The cell cell-a")
        await agent.stop(stop_instances=True)
    finally:
        await platform.close()

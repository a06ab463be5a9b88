"""Droplets over the API: create, upload (a job checks the bits), assign, signed downloads
for cells, delete; hostile uploads and other users' droplets. The main flows run on SQLite
and on PostgreSQL."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from overcast.controller.droplets import Droplets
from overcast.testing.droplets import build_droplet
from tests.integration.api.conftest import BASE, Api

WORKER = {"web": "python3 app.py", "worker": "python3 worker.py"}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_api(request: pytest.FixtureRequest) -> Api:
    """The API harness on each store backend."""
    name = "api" if request.param == "sqlite" else "api_on_postgres"
    harness: Api = request.getfixturevalue(name)
    return harness


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"errors"}, body
    (error,) = body["errors"]
    assert set(error) == {"code", "title", "detail"}
    return dict(error)


async def _app(api: Api, name: str = "web") -> dict[str, Any]:
    org = await api.org()
    space = await api.space(org["guid"])
    return await api.app(space["guid"], name)


async def _create(
    api: Api, app_guid: str, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    return await api.http.post(
        "/v3/droplets",
        headers=headers or api.admin,
        json={"relationships": {"app": {"data": {"guid": app_guid}}}, **extra},
    )


def _tarball(tmp_path: Path, **build: Any) -> tuple[bytes, str]:
    built = build_droplet(tmp_path / f"droplet-{len(list(tmp_path.iterdir()))}.tgz", **build)
    return built.path.read_bytes(), built.sha256


def _gzipped_tar(entries: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for info in entries:
            content = (data or {}).get(info.name)
            if content is not None:
                info.size = len(content)
            archive.addfile(info, io.BytesIO(content) if content is not None else None)
    return gzip.compress(raw.getvalue())


async def _failed_upload(api: Api, app_guid: str, data: bytes) -> tuple[dict[str, Any], str]:
    """Upload bits that are accepted but fail the job: (droplet, job error detail)."""
    droplet = (await _create(api, app_guid)).json()
    response = await api.upload_droplet(droplet["guid"], data)
    assert response.status_code == 202, response.text
    job = await api.wait_job(response.headers["location"])
    assert job["state"] == "FAILED", job
    assert job["operation"] == "droplet.upload"
    (error,) = job["errors"]
    assert error["title"] == "CF-UnprocessableEntity"
    stored = (await api.http.get(f"/v3/droplets/{droplet['guid']}", headers=api.admin)).json()
    assert stored["state"] == "FAILED" and stored["checksum"] is None
    assert error["detail"] in stored["error"]
    return stored, str(error["detail"])


def _blob_files(api: Api) -> list[str]:
    root = api.parts.controller.droplets.blobs.root  # type: ignore[attr-defined]
    return sorted(str(path.relative_to(root)) for path in Path(root).rglob("*") if path.is_file())


# --- the main flow ----------------------------------------------------------------------------


async def test_create_upload_assign_start(any_api: Api, tmp_path: Path) -> None:
    api = any_api
    app = await _app(api)
    created = await _create(api, app["guid"])
    assert created.status_code == 201, created.text
    assert "location" not in created.headers
    droplet = created.json()
    guid = droplet["guid"]
    assert droplet == {
        "guid": guid,
        "created_at": droplet["created_at"],
        "updated_at": droplet["updated_at"],
        "state": "AWAITING_UPLOAD",
        "error": None,
        "lifecycle": {"type": "buildpack", "data": {"buildpacks": [], "stack": "overcast-linux"}},
        "execution_metadata": "",
        "process_types": {},
        "checksum": None,
        "buildpacks": [],
        "stack": "overcast-linux",
        "image": None,
        "relationships": {"app": {"data": {"guid": app["guid"]}}},
        "metadata": {"labels": {}, "annotations": {}},
        "links": {
            "self": {"href": f"{BASE}/v3/droplets/{guid}"},
            "app": {"href": f"{BASE}/v3/apps/{app['guid']}"},
            "assign_current_droplet": {
                "href": f"{BASE}/v3/apps/{app['guid']}/relationships/current_droplet",
                "method": "PATCH",
            },
            "upload": {"href": f"{BASE}/v3/droplets/{guid}/upload", "method": "POST"},
        },
    }

    # Bigger than the API's general body limit (64 KiB here): uploads have their own.
    bits, sha256 = _tarball(
        tmp_path,
        files={"app.py": "print('hi')", "blob.bin": os.urandom(200_000)},
        process_types=WORKER,
    )
    assert len(bits) > 64 * 1024
    uploaded = await api.upload_droplet(guid, bits)
    assert uploaded.status_code == 202, uploaded.text
    assert uploaded.headers["location"].startswith(f"{BASE}/v3/jobs/")
    assert uploaded.json()["state"] == "PROCESSING_UPLOAD"
    job = await api.wait_job(uploaded.headers["location"])
    assert (job["state"], job["operation"]) == ("COMPLETE", "droplet.upload")

    staged = (await api.http.get(f"/v3/droplets/{guid}", headers=api.admin)).json()
    assert staged["state"] == "STAGED"
    assert staged["checksum"] == {"type": "sha256", "value": sha256}
    assert staged["process_types"] == WORKER
    assert staged["buildpacks"] == [
        {"name": "test", "detect_output": None, "buildpack_name": "test", "version": None}
    ]
    assert staged["links"]["download"] == {"href": f"{BASE}/v3/droplets/{guid}/download"}
    assert "upload" not in staged["links"]
    assert _blob_files(api) == [f"droplets/{guid}.tgz"]

    again = await api.upload_droplet(guid, bits)
    assert again.status_code == 422 and "only be uploaded once" in _error(again)["detail"]

    listed = await api.http.get(
        f"/v3/droplets?app_guids={app['guid']}&states=STAGED", headers=api.admin
    )
    assert [d["guid"] for d in listed.json()["resources"]] == [guid]
    none = await api.http.get("/v3/droplets?states=FAILED", headers=api.admin)
    assert none.json()["pagination"]["total_results"] == 0
    of_app = await api.http.get(f"/v3/apps/{app['guid']}/droplets", headers=api.admin)
    assert [d["guid"] for d in of_app.json()["resources"]] == [guid]

    current = f"/v3/apps/{app['guid']}/droplets/current"
    relationship = f"/v3/apps/{app['guid']}/relationships/current_droplet"
    assert (await api.http.get(current, headers=api.admin)).status_code == 404
    assert (await api.http.get(relationship, headers=api.admin)).status_code == 404
    assigned = await api.http.patch(relationship, headers=api.admin, json={"data": {"guid": guid}})
    assert assigned.status_code == 200, assigned.text
    assert assigned.json() == {
        "data": {"guid": guid},
        "links": {
            "self": {"href": f"{BASE}{relationship}"},
            "related": {"href": f"{BASE}{current}"},
        },
    }
    assert (await api.http.get(relationship, headers=api.admin)).json() == assigned.json()
    assert (await api.http.get(current, headers=api.admin)).json()["guid"] == guid

    processes = (await api.http.get(f"/v3/apps/{app['guid']}/processes", headers=api.admin)).json()[
        "resources"
    ]
    assert {(p["type"], p["instances"]) for p in processes} == {("web", 1), ("worker", 0)}

    started = await api.http.post(f"/v3/apps/{app['guid']}/actions/start", headers=api.admin)
    assert started.status_code == 200 and started.json()["state"] == "STARTED"
    events = (
        await api.http.get(f"/v3/audit_events?target_guids={app['guid']}", headers=api.admin)
    ).json()["resources"]
    types = [event["type"] for event in events]
    assert types[:5] == [
        "audit.app.create",
        "audit.app.droplet.create",
        "audit.app.droplet.upload",
        "audit.app.droplet.mapped",
        "audit.app.start",
    ]
    mapped = events[3]
    assert mapped["data"]["request"] == {"droplet_guid": guid}


async def test_staging_info_does_not_override_given_process_types(api: Api, tmp_path: Path) -> None:
    app = await _app(api)
    droplet = (await _create(api, app["guid"], process_types={"web": "./run"})).json()
    assert droplet["process_types"] == {"web": "./run"}
    bits, _ = _tarball(tmp_path, process_types=WORKER)
    job = await api.wait_job((await api.upload_droplet(droplet["guid"], bits)).headers["location"])
    assert job["state"] == "COMPLETE"
    stored = (await api.http.get(f"/v3/droplets/{droplet['guid']}", headers=api.admin)).json()
    assert stored["process_types"] == {"web": "./run"}


async def test_metadata_update_and_label_on_create(api: Api) -> None:
    app = await _app(api)
    created = await _create(api, app["guid"], metadata={"labels": {"tier": "gold"}})
    guid = created.json()["guid"]
    assert created.json()["metadata"]["labels"] == {"tier": "gold"}
    patched = await api.http.patch(
        f"/v3/droplets/{guid}",
        headers=api.admin,
        json={"metadata": {"labels": {"tier": None}, "annotations": {"note": "x"}}},
    )
    assert patched.status_code == 200
    assert patched.json()["metadata"] == {"labels": {}, "annotations": {"note": "x"}}


# --- cells: for_start and signed URLs ---------------------------------------------------------


async def test_for_start_gives_a_signed_url_any_controller_accepts(
    any_api: Api, tmp_path: Path
) -> None:
    api = any_api
    droplets = api.parts.controller.droplets
    app = await _app(api)
    assert await droplets.for_start(app["guid"]) is None
    assert await droplets.for_start("no-such-app") is None
    staged = await api.droplet(app["guid"], process_types=WORKER)
    found = await droplets.for_start(app["guid"])
    assert found is not None
    droplet, url = found
    assert droplet.guid == staged["guid"] and droplet.process_types == WORKER
    assert droplet.checksum == staged["checksum"]["value"]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE
    assert parts.path == f"/v3/x/blobs/droplets/{droplet.guid}"
    query = parse_qs(parts.query)
    assert set(query) == {"expires", "signature"}
    assert int(query["expires"][0]) == int(api.clock.now().timestamp()) + 900

    response = await api.http.get(url)  # no bearer token
    assert response.status_code == 200, response.text
    assert response.headers["x-checksum-sha256"] == droplet.checksum
    assert response.headers["content-type"] == "application/gzip"
    blob = api.parts.controller.droplets.blobs.local_path("droplets", droplet.guid)
    assert blob is not None and response.content == blob.read_bytes()

    # Another controller of the cluster (same database, same blobstore) accepts it.
    other = Droplets(
        api.parts.store,
        api.clock,
        api.parts.engine,
        blobs=droplets.blobs,
        max_droplet_bytes=droplets.max_droplet_bytes,
        signed_url_ttl_seconds=900,
    )
    accepted = await other.signed_blob(
        "GET", droplet.guid, query["expires"][0], query["signature"][0]
    )
    assert accepted.sha256 == droplet.checksum


async def test_bad_signatures_are_403(api: Api) -> None:
    app = await _app(api)
    first = await api.droplet(app["guid"])
    second = await api.droplet(app["guid"], assign=False)
    url = await api.parts.controller.droplets.download_url(first["guid"])
    path, _, query = url.removeprefix(BASE).partition("?")
    params = parse_qs(query)
    expires, signature = params["expires"][0], params["signature"][0]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    other_path = f"/v3/x/blobs/droplets/{second['guid']}"
    for bad in (
        path,
        f"{path}?expires={expires}",
        f"{path}?signature={signature}",
        f"{path}?expires={expires}&signature={flipped}",
        f"{path}?expires={int(expires) + 1}&signature={signature}",
        f"{path}?expires={expires}&signature={signature.upper()}",
        f"{path}?expires=-1&signature={signature}",
        f"{path}?expires={expires}&signature={signature}&signature={signature}",
        f"{path}?expires={expires}&signature={signature}&extra=1",
        f"{other_path}?expires={expires}&signature={signature}",  # tampered path
        f"{path}x?expires={expires}&signature={signature}",
    ):
        response = await api.http.get(bad)
        assert response.status_code == 403, (bad, response.text)
        error = _error(response)
        assert (error["code"], error["title"]) == (10003, "CF-NotAuthorized")
    escaped = f"/v3/x/blobs/droplets/..%2F{first['guid']}?expires={expires}&signature={signature}"
    assert (await api.http.get(escaped)).status_code == 404  # no such route
    # A bearer token is no substitute for the signature.
    assert (await api.http.get(path, headers=api.admin)).status_code == 403
    assert (await api.http.get(f"{path}?{query}")).status_code == 200
    api.clock.advance(901)
    expired = await api.http.get(f"{path}?{query}")
    assert expired.status_code == 403 and _error(expired)["title"] == "CF-NotAuthorized"


async def test_a_valid_signature_for_a_missing_droplet_is_404(api: Api) -> None:
    url = await api.parts.controller.droplets.download_url("0d4bc8f4-no-such-droplet")
    response = await api.http.get(url.removeprefix(BASE))
    assert response.status_code == 404
    assert _error(response)["title"] == "CF-ResourceNotFound"


async def test_developers_download_by_redirect(api: Api) -> None:
    app = await _app(api)
    droplet = await api.droplet(app["guid"])
    response = await api.http.get(droplet["links"]["download"]["href"], headers=api.admin)
    assert response.status_code == 302
    target = response.headers["location"]
    assert target.startswith(f"{BASE}/v3/x/blobs/droplets/{droplet['guid']}?expires=")
    assert (await api.http.get(target)).status_code == 200
    waiting = (await _create(api, app["guid"])).json()
    refused = await api.http.get(f"/v3/droplets/{waiting['guid']}/download", headers=api.admin)
    assert refused.status_code == 422


# --- hostile and malformed uploads ------------------------------------------------------------


async def test_upload_bodies_that_are_not_a_bits_file(api: Api) -> None:
    app = await _app(api)
    guid = (await _create(api, app["guid"])).json()["guid"]
    url = f"/v3/droplets/{guid}/upload"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"json": {"bits": "x"}}, "multipart/form-data"),
        ({"content": b"raw", "headers": {"Content-Type": "application/gzip"}}, "multipart"),
        (
            {"content": b"x", "headers": {"Content-Type": "multipart/form-data"}},
            "multipart/form-data",
        ),
        ({"files": {"other": ("a.tgz", b"abc")}}, "Unknown field(s): 'other'"),
        ({"data": {"resources": "[]"}, "files": {"bits": ("a.tgz", b"abc")}}, "Unknown field"),
        ({"files": {"bits": ("a.tgz", b"")}}, "empty"),
        (
            {
                "content": b'--xyz\r\nContent-Disposition: form-data; name="bits"\r\n\r\nabc',
                "headers": {"Content-Type": "multipart/form-data; boundary=xyz"},
            },
            "ended before",
        ),
        (
            {
                "content": b'--xyz\r\nContent-Disposition: form-data; name="bits"\r\n\r\n'
                b"abc\r\n--xyz--\r\n",
                "headers": {"Content-Type": "multipart/form-data; boundary=other"},
            },
            "multipart",
        ),
        (
            {
                "content": b'--xyz\r\nContent-Disposition: form-data; name="bits"\r\n\r\n'
                b'a\r\n--xyz\r\nContent-Disposition: form-data; name="bits"\r\n\r\n'
                b"b\r\n--xyz--\r\n",
                "headers": {"Content-Type": "multipart/form-data; boundary=xyz"},
            },
            "more than once",
        ),
    ]
    for request, fragment in cases:
        headers = {**api.admin, **request.pop("headers", {})}
        response = await api.http.post(url, headers=headers, **request)
        assert response.status_code == 422, (request, response.text)
        error = _error(response)
        assert error["title"] == "CF-UnprocessableEntity"
        assert fragment in error["detail"], (fragment, error)
    droplet = (await api.http.get(f"/v3/droplets/{guid}", headers=api.admin)).json()
    assert droplet["state"] == "AWAITING_UPLOAD"
    assert _blob_files(api) == []


async def test_oversized_upload_is_413_and_leaves_nothing(api: Api, tmp_path: Path) -> None:
    api.parts.controller.droplets.max_droplet_bytes = 4096
    app = await _app(api)
    guid = (await _create(api, app["guid"])).json()["guid"]
    bits, _ = _tarball(tmp_path, files={"big.bin": os.urandom(20_000)})
    response = await api.upload_droplet(guid, bits)
    assert response.status_code == 413, response.text
    error = _error(response)
    assert (error["title"], error["code"]) == ("CF-RequestEntityTooLarge", 10004)
    assert "4096" in error["detail"]
    droplet = (await api.http.get(f"/v3/droplets/{guid}", headers=api.admin)).json()
    assert droplet["state"] == "AWAITING_UPLOAD"
    assert _blob_files(api) == []
    small, _ = _tarball(tmp_path, files={"a.py": "x"})
    assert len(small) < 4096
    accepted = await api.upload_droplet(guid, small)
    assert (await api.wait_job(accepted.headers["location"]))["state"] == "COMPLETE"


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


async def test_invalid_archives_fail_the_droplet_and_the_job(api: Api, tmp_path: Path) -> None:
    app = await _app(api)
    good, _ = _tarball(tmp_path)
    info = b"process_types: {web: ./run}\n"
    cases: list[tuple[bytes, str]] = [
        (b"this is not a tarball at all", "not a gzipped tarball"),
        (good[: len(good) // 2], "truncated"),
        (good[:-8] + b"\x00" * 8, "droplet"),  # bad CRC and length
        (gzip.compress(os.urandom(2000)), "not a valid tar archive"),
        (gzip.compress(b""), "not a valid tar archive"),
        (good + b"garbage after the gzip stream", "not a gzipped tarball"),
        (
            _gzipped_tar([_member("../escape")], {"../escape": b"x"}),
            "'../escape'",
        ),
        (_gzipped_tar([_member("/etc/passwd")], {"/etc/passwd": b"x"}), "'/etc/passwd'"),
        (
            _gzipped_tar([_member("app/link", tarfile.SYMTYPE, "../../etc")]),
            "'app/link'",
        ),
        (
            _gzipped_tar([_member("app/abs", tarfile.SYMTYPE, "/etc/shadow")]),
            "'app/abs'",
        ),
        (_gzipped_tar([_member("app/dev", tarfile.CHRTYPE)]), "special file"),
        (
            _gzipped_tar([_member("app/a.py")], {"app/a.py": b"print(1)"}),
            "no process types",
        ),
        (
            _gzipped_tar(
                [_member("staging_info.yml")], {"staging_info.yml": b"process_types: [1, 2]"}
            ),
            "process_types",
        ),
        (
            _gzipped_tar([_member("staging_info.yml")], {"staging_info.yml": b"{{{"}),
            "not valid YAML",
        ),
        (
            _gzipped_tar(
                [_member("staging_info.yml")],
                {"staging_info.yml": b"process_types: {web: x}\n#" + b"x" * 70_000},
            ),
            "larger than",
        ),
    ]
    for data, fragment in cases:
        _, detail = await _failed_upload(api, app["guid"], data)
        assert fragment in detail, (fragment, detail)
    assert _blob_files(api) == []
    # The same checks let a well-formed archive through.
    fine = _gzipped_tar(
        [_member("./app/", tarfile.DIRTYPE), _member("./staging_info.yml")],
        {"./staging_info.yml": info},
    )
    droplet = (await _create(api, app["guid"])).json()
    job = await api.wait_job((await api.upload_droplet(droplet["guid"], fine)).headers["location"])
    assert job["state"] == "COMPLETE", job


async def test_over_compressed_archive_is_refused(api: Api) -> None:
    api.parts.controller.droplets.max_droplet_bytes = 64 * 1024
    app = await _app(api)
    zeros = b"\x00" * (2 * 1024 * 1024)
    bomb = _gzipped_tar([_member("app/zeros")], {"app/zeros": zeros})
    assert len(bomb) < 64 * 1024
    _, detail = await _failed_upload(api, app["guid"], bomb)
    assert "over-compressed" in detail


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({}, "relationships is required"),
        ({"relationships": {"app": {"data": {}}}}, "guid is required"),
        ({"relationships": {"app": {"data": {"guid": 5}}}}, "guid"),
        ({"relationships": {"app": {"data": {"guid": "x"}}}, "colour": 1}, "Unknown field(s)"),
        ({"relationships": {"app": {"data": {"guid": "x"}}}, "process_types": {"web": 5}}, "web"),
        ({"relationships": {"app": {"data": {"guid": "x"}}}, "process_types": []}, "process"),
        ({"relationships": {"app": {"data": {"guid": "nope"}}}}, "does not exist"),
    ],
)
async def test_wrong_create_bodies(api: Api, body: Any, fragment: str) -> None:
    response = await api.http.post("/v3/droplets", headers=api.admin, json=body)
    assert response.status_code == 422, response.text
    assert fragment in _error(response)["detail"]


async def test_wrong_process_types(api: Api) -> None:
    app = await _app(api)
    for types in ({"we b": "x"}, {"web": ""}, {"web": "a\u0000b"}, {"-x": "y"}):
        response = await _create(api, app["guid"], process_types=types)
        assert response.status_code == 422, (types, response.text)


async def test_assigning_needs_a_staged_droplet_of_the_app(api: Api) -> None:
    app = await _app(api, "one")
    other = await api.app(app["relationships"]["space"]["data"]["guid"], "two")
    waiting = (await _create(api, app["guid"])).json()
    theirs = await api.droplet(other["guid"], assign=False)
    url = f"/v3/apps/{app['guid']}/relationships/current_droplet"
    for body, fragment in (
        ({"data": {"guid": waiting["guid"]}}, "STAGED"),
        ({"data": {"guid": theirs["guid"]}}, "belongs to this app"),
        ({"data": {"guid": "no-such-droplet"}}, "belongs to this app"),
        ({"data": None}, "data"),
        ({}, "data is required"),
        ({"data": {"guid": theirs["guid"]}, "x": 1}, "Unknown field(s)"),
    ):
        response = await api.http.patch(url, headers=api.admin, json=body)
        assert response.status_code == 422, (body, response.text)
        assert fragment in _error(response)["detail"], (fragment, response.text)
    assert (await api.http.get(url, headers=api.admin)).status_code == 404


async def test_restart_also_needs_a_droplet(api: Api) -> None:
    app = await _app(api)
    response = await api.http.post(f"/v3/apps/{app['guid']}/actions/restart", headers=api.admin)
    assert response.status_code == 422
    assert _error(response)["detail"] == "Assign a droplet before starting this app."
    stop = await api.http.post(f"/v3/apps/{app['guid']}/actions/stop", headers=api.admin)
    assert stop.status_code == 200


# --- visibility and permissions ---------------------------------------------------------------


async def test_other_users_and_roles(api: Api, tmp_path: Path) -> None:
    app = await _app(api)
    space_guid = app["relationships"]["space"]["data"]["guid"]
    org_guid = (await api.http.get(f"/v3/spaces/{space_guid}", headers=api.admin)).json()[
        "relationships"
    ]["organization"]["data"]["guid"]
    droplet = await api.droplet(app["guid"], assign=False, process_types=WORKER)
    waiting = (await _create(api, app["guid"])).json()
    bits, _ = _tarball(tmp_path)

    _, stranger = await api.user("stranger")
    for method, path in (
        ("GET", f"/v3/droplets/{droplet['guid']}"),
        ("PATCH", f"/v3/droplets/{droplet['guid']}"),
        ("DELETE", f"/v3/droplets/{droplet['guid']}"),
        ("GET", f"/v3/droplets/{droplet['guid']}/download"),
        ("GET", f"/v3/apps/{app['guid']}/droplets"),
        ("GET", f"/v3/apps/{app['guid']}/droplets/current"),
        ("PATCH", f"/v3/apps/{app['guid']}/relationships/current_droplet"),
    ):
        body = {"data": {"guid": droplet["guid"]}} if "relationships" in path else {}
        response = await api.http.request(method, path, headers=stranger, json=body)
        assert response.status_code == 404, (method, path, response.text)
    assert (await api.upload_droplet(waiting["guid"], bits, stranger)).status_code == 404
    listed = (await api.http.get("/v3/droplets", headers=stranger)).json()
    assert listed["pagination"]["total_results"] == 0
    created = await _create(api, app["guid"], stranger)
    assert created.status_code == 422 and "does not exist" in _error(created)["detail"]

    auditor_guid, auditor = await api.user("auditor")
    await api.role("organization_user", auditor_guid, org=org_guid)
    await api.role("space_auditor", auditor_guid, space=space_guid)
    seen = await api.http.get(f"/v3/droplets/{droplet['guid']}", headers=auditor)
    assert seen.status_code == 200
    # Process commands may hold secrets: hidden from those who cannot read the space's.
    assert seen.json()["process_types"] == {
        "web": "[PRIVATE DATA HIDDEN]",
        "worker": "[PRIVATE DATA HIDDEN]",
    }
    listed = (await api.http.get("/v3/droplets", headers=auditor)).json()["resources"]
    assert {d["process_types"].get("web") for d in listed} == {"[PRIVATE DATA HIDDEN]", None}
    for method, path in (
        ("PATCH", f"/v3/droplets/{droplet['guid']}"),
        ("DELETE", f"/v3/droplets/{droplet['guid']}"),
        ("GET", f"/v3/droplets/{droplet['guid']}/download"),
        ("PATCH", f"/v3/apps/{app['guid']}/relationships/current_droplet"),
    ):
        body = {"data": {"guid": droplet["guid"]}} if "relationships" in path else {}
        response = await api.http.request(method, path, headers=auditor, json=body)
        assert response.status_code == 403, (method, path, response.text)
    assert (await api.upload_droplet(waiting["guid"], bits, auditor)).status_code == 403
    assert (await _create(api, app["guid"], auditor)).status_code == 403

    developer_guid, developer = await api.user("developer")
    await api.role("organization_user", developer_guid, org=org_guid)
    await api.role("space_developer", developer_guid, space=space_guid)
    mine = await api.http.get(f"/v3/droplets/{droplet['guid']}", headers=developer)
    assert mine.json()["process_types"] == WORKER
    assigned = await api.http.patch(
        f"/v3/apps/{app['guid']}/relationships/current_droplet",
        headers=developer,
        json={"data": {"guid": droplet["guid"]}},
    )
    assert assigned.status_code == 200
    # The upload job belongs to its creator.
    uploaded = await api.upload_droplet(waiting["guid"], bits, developer)
    assert uploaded.status_code == 202
    assert (await api.http.get(uploaded.headers["location"], headers=auditor)).status_code == 404
    assert (await api.wait_job(uploaded.headers["location"], developer))["state"] == "COMPLETE"


# --- deletes ----------------------------------------------------------------------------------


async def test_delete_droplet_removes_blob_and_current(any_api: Api) -> None:
    api = any_api
    app = await _app(api)
    droplet = await api.droplet(app["guid"])
    assert _blob_files(api) == [f"droplets/{droplet['guid']}.tgz"]
    response = await api.http.delete(f"/v3/droplets/{droplet['guid']}", headers=api.admin)
    assert response.status_code == 202 and response.content == b""
    job = await api.wait_job(response.headers["location"])
    assert (job["state"], job["operation"]) == ("COMPLETE", "droplet.delete")
    assert (
        await api.http.get(f"/v3/droplets/{droplet['guid']}", headers=api.admin)
    ).status_code == 404
    assert _blob_files(api) == []
    relationship = f"/v3/apps/{app['guid']}/relationships/current_droplet"
    assert (await api.http.get(relationship, headers=api.admin)).status_code == 404
    start = await api.http.post(f"/v3/apps/{app['guid']}/actions/start", headers=api.admin)
    assert start.status_code == 422
    events = (
        await api.http.get(
            f"/v3/audit_events?types=audit.app.droplet.delete&target_guids={app['guid']}",
            headers=api.admin,
        )
    ).json()
    assert events["pagination"]["total_results"] == 1


async def test_deleting_the_app_sweeps_its_blobs(api: Api) -> None:
    app = await _app(api)
    await api.droplet(app["guid"])
    await api.droplet(app["guid"], assign=False)
    assert len(_blob_files(api)) == 2
    response = await api.http.delete(f"/v3/apps/{app['guid']}", headers=api.admin)
    assert (await api.wait_job(response.headers["location"]))["state"] == "COMPLETE"
    listed = (await api.http.get("/v3/droplets", headers=api.admin)).json()
    assert listed["pagination"]["total_results"] == 0
    for _ in range(200):
        if not _blob_files(api):
            break
        await asyncio.sleep(0.02)
    assert _blob_files(api) == []

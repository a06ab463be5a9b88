"""Packages over the API: create, upload (bits and/or resources; a job checks and stores them),
resource matching, re-uploads from matched files only, materialize and signed downloads for
staging, delete; hostile zips and resources, limits and other users. The main flows run on
SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from overcast.controller.package_archive import PackageLimits
from tests.integration.api.conftest import BASE, Api

FILES = {
    "app.py": b"print('hello')\n",
    "lib/util.py": b"X = 1\n",
    "static/big.bin": os.urandom(200_000),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_api(request: pytest.FixtureRequest) -> Api:
    name = "api" if request.param == "sqlite" else "api_on_postgres"
    harness: Api = request.getfixturevalue(name)
    return harness


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"errors"}, body
    (error,) = body["errors"]
    return dict(error)


def _zip(
    files: dict[str, bytes],
    *,
    modes: dict[str, int] | None = None,
    links: dict[str, str] | None = None,
) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (modes or {}).get(name, stat.S_IFREG | 0o644) << 16
            archive.writestr(info, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return raw.getvalue()


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _v3(path: str, data: bytes, mode: str = "644") -> dict[str, Any]:
    return {
        "path": path,
        "size_in_bytes": len(data),
        "checksum": {"value": _sha1(data)},
        "mode": mode,
    }


async def _app(api: Api, name: str = "web") -> dict[str, Any]:
    org = await api.org()
    space = await api.space(org["guid"])
    return await api.app(space["guid"], name)


async def _create(
    api: Api, app_guid: str, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    body = {"type": "bits", "relationships": {"app": {"data": {"guid": app_guid}}}, **extra}
    return await api.http.post("/v3/packages", headers=headers or api.admin, json=body)


async def _upload(
    api: Api,
    guid: str,
    bits: bytes | None = None,
    resources: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    # Always multipart (as clients send it), `resources` as a plain form field.
    files: dict[str, Any] = {}
    if resources is not None:
        text = resources if isinstance(resources, str) else json.dumps(resources)
        files["resources"] = (None, text.encode())
    if bits is not None:
        files["bits"] = ("app.zip", bits, "application/zip")
    if not files:
        files["other"] = ("x", b"x", "text/plain")
    return await api.http.post(
        f"/v3/packages/{guid}/upload", headers=headers or api.admin, files=files
    )


async def _settled(api: Api, guid: str) -> dict[str, Any]:
    for _ in range(400):
        package = (await api.http.get(f"/v3/packages/{guid}", headers=api.admin)).json()
        if package["state"] not in ("AWAITING_UPLOAD", "PROCESSING_UPLOAD"):
            return dict(package)
        await asyncio.sleep(0.02)
    raise AssertionError(f"package {guid} was not processed")


async def _job_of(api: Api, guid: str) -> dict[str, Any]:
    listed = await api.http.get(
        f"/v3/x/jobs?operations=package.upload&target_guids={guid}", headers=api.admin
    )
    assert listed.status_code == 200, listed.text
    (job,) = listed.json()["resources"]
    return await api.wait_job(f"{BASE}/v3/jobs/{job['guid']}")


async def _package(
    api: Api, app_guid: str, bits: bytes | None = None, resources: Any = None
) -> dict[str, Any]:
    created = await _create(api, app_guid)
    assert created.status_code == 201, created.text
    uploaded = await _upload(api, created.json()["guid"], bits, resources)
    assert uploaded.status_code == 200, uploaded.text
    return await _settled(api, created.json()["guid"])


async def _failed(api: Api, app_guid: str, bits: bytes | None, resources: Any = None) -> str:
    package = await _package(api, app_guid, bits, resources)
    assert package["state"] == "FAILED", package
    assert package["data"]["checksum"]["value"] is None
    job = await _job_of(api, package["guid"])
    assert (job["state"], job["operation"]) == ("FAILED", "package.upload")
    (error,) = job["errors"]
    assert error["title"] == "CF-UnprocessableEntity"
    assert error["detail"] in package["data"]["error"]
    return str(error["detail"])


def _blob_root(api: Api) -> Path:
    return Path(api.parts.controller.packages.blobs.root)  # type: ignore[attr-defined]


def _stored(api: Api) -> list[str]:
    root = _blob_root(api)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- the main flow ----------------------------------------------------------------------------


async def test_create_upload_materialize_download(any_api: Api, tmp_path: Path) -> None:
    api = any_api
    app = await _app(api)
    created = await _create(api, app["guid"])
    assert created.status_code == 201, created.text
    assert "location" not in created.headers
    package = created.json()
    guid = package["guid"]
    path = f"{BASE}/v3/packages/{guid}"
    assert package == {
        "guid": guid,
        "created_at": package["created_at"],
        "updated_at": package["updated_at"],
        "type": "bits",
        "data": {"checksum": {"type": "sha256", "value": None}, "error": None},
        "state": "AWAITING_UPLOAD",
        "relationships": {"app": {"data": {"guid": app["guid"]}}},
        "metadata": {"labels": {}, "annotations": {}},
        "links": {
            "self": {"href": path},
            "upload": {"href": f"{path}/upload", "method": "POST"},
            "download": {"href": f"{path}/download"},
            "app": {"href": f"{BASE}/v3/apps/{app['guid']}"},
        },
    }

    bits = _zip(
        {**FILES, "bin/run": b"#!/bin/sh\necho hi\n"},
        modes={"bin/run": stat.S_IFREG | 0o755},
        links={"current": "lib/util.py"},
    )
    assert len(bits) > 64 * 1024  # past the API's general body limit: uploads have their own
    uploaded = await _upload(api, guid, bits)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["state"] == "PROCESSING_UPLOAD"
    assert "location" not in uploaded.headers
    ready = await _settled(api, guid)
    assert ready["state"] == "READY", ready
    assert ready["data"]["error"] is None
    checksum = ready["data"]["checksum"]
    assert checksum["type"] == "sha256" and len(checksum["value"]) == 64
    job = await _job_of(api, guid)
    assert job["state"] == "COMPLETE"

    # Files are content-addressed; the package is a manifest; the upload is gone.
    stored = _stored(api)
    for data in FILES.values():
        sha1 = _sha1(data)
        assert f"files/{sha1[:2]}/{sha1}" in stored
    assert f"packages/{guid}.json" in stored
    assert not [name for name in stored if name.startswith(("package_uploads/", "tmp/"))]

    again = await _upload(api, guid, bits)
    assert again.status_code == 422 and "only once" in _error(again)["detail"]

    # Lists and filters.
    for query in (
        f"app_guids={app['guid']}",
        "states=READY",
        "types=bits",
        f"space_guids={app['relationships']['space']['data']['guid']}",
        f"guids={guid}",
    ):
        listed = await api.http.get(f"/v3/packages?{query}", headers=api.admin)
        assert [p["guid"] for p in listed.json()["resources"]] == [guid], query
    none = await api.http.get("/v3/packages?states=FAILED", headers=api.admin)
    assert none.json()["pagination"]["total_results"] == 0
    of_app = await api.http.get(f"/v3/apps/{app['guid']}/packages", headers=api.admin)
    assert [p["guid"] for p in of_app.json()["resources"]] == [guid]

    # Staging's view: the files written out, modes and links included.
    packages = api.parts.controller.packages
    dest = tmp_path / "build"
    assert await packages.materialize(guid, dest) == len(FILES) + 2
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert os.stat(dest / "bin/run").st_mode & 0o777 == 0o755
    assert os.readlink(dest / "current") == "lib/util.py"
    with pytest.raises(Exception, match="not empty"):
        await packages.materialize(guid, dest)

    # ... or a zip from a signed URL (a developer's download redirects to one).
    redirected = await api.http.get(f"/v3/packages/{guid}/download", headers=api.admin)
    assert redirected.status_code == 302
    signed = redirected.headers["location"]
    assert signed.startswith(f"{BASE}/v3/x/blobs/packages/{guid}?")
    split = urlsplit(signed)
    fetched = await api.http.get(f"{split.path}?{split.query}")
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["x-package-checksum-sha256"] == checksum["value"]
    with zipfile.ZipFile(io.BytesIO(fetched.content)) as archive:
        assert {name: archive.read(name) for name in FILES} == FILES
        assert archive.getinfo("bin/run").external_attr >> 16 & 0o777 == 0o755
    tampered = await api.http.get(f"{split.path}?{split.query.replace('expires=', 'expires=1')}")
    assert tampered.status_code == 403
    assert (await api.http.get(f"/v3/x/blobs/packages/{guid}")).status_code == 403

    events = (
        await api.http.get(f"/v3/audit_events?target_guids={app['guid']}", headers=api.admin)
    ).json()["resources"]
    types = [event["type"] for event in events]
    for expected in (
        "audit.app.package.create",
        "audit.app.package.upload",
        "audit.app.package.download",
    ):
        assert expected in types

    deleted = await api.http.delete(f"/v3/packages/{guid}", headers=api.admin)
    assert deleted.status_code == 202
    job = await api.wait_job(deleted.headers["location"])
    assert (job["state"], job["operation"]) == ("COMPLETE", "package.delete")
    assert (await api.http.get(f"/v3/packages/{guid}", headers=api.admin)).status_code == 404
    assert f"packages/{guid}.json" not in _stored(api)


async def test_resource_matches_and_upload_from_matched_files(any_api: Api) -> None:
    api = any_api
    app = await _app(api)
    empty = await api.http.post(
        "/v3/resource_matches",
        headers=api.admin,
        json={"resources": [_v3(name, data) for name, data in FILES.items()]},
    )
    assert empty.status_code == 201 and empty.json() == {"resources": []}

    first = await _package(api, app["guid"], _zip(FILES))
    assert first["state"] == "READY"
    unknown = _v3("new.txt", b"never uploaded")
    wrong_size = {**_v3("app.py", FILES["app.py"]), "size_in_bytes": 3}
    asked = [*(_v3(name, data) for name, data in FILES.items()), unknown, wrong_size]
    matched = await api.http.post(
        "/v3/resource_matches", headers=api.admin, json={"resources": asked}
    )
    assert matched.status_code == 201, matched.text
    assert matched.json() == {"resources": asked[: len(FILES)]}

    # Every file matched: no bits at all, and the same package (checksum) as the upload.
    v3 = [_v3(name, data) for name, data in FILES.items()]
    second = await _package(api, app["guid"], resources=v3)
    assert second["state"] == "READY", second
    assert second["data"]["checksum"] == first["data"]["checksum"]
    # The cf CLI's v2 shape works too; half in bits, half matched gives the same package.
    v2 = [
        {"fn": name, "size": len(data), "sha1": _sha1(data), "mode": "0644"}
        for name, data in FILES.items()
        if name != "app.py"
    ]
    third = await _package(api, app["guid"], _zip({"app.py": FILES["app.py"]}), v2)
    assert third["data"]["checksum"] == first["data"]["checksum"]
    # A different mode is a different package.
    fourth = await _package(api, app["guid"], resources=[{**v3[0], "mode": "755"}])
    assert fourth["state"] == "READY"
    assert fourth["data"]["checksum"] != first["data"]["checksum"]


async def test_a_missing_or_different_resource_fails_the_package(api: Api) -> None:
    app = await _app(api)
    await _package(api, app["guid"], _zip(FILES))
    detail = await _failed(
        api, app["guid"], None, [_v3("app.py", FILES["app.py"]), _v3("gone.txt", b"nope")]
    )
    assert "'gone.txt'" in detail and "not held" in detail
    wrong = {**_v3("lib/x.py", FILES["app.py"]), "size_in_bytes": 1}
    detail = await _failed(api, app["guid"], None, [wrong])
    assert "'lib/x.py'" in detail and "size" in detail
    clash = _zip({"app.py": b"other"})
    detail = await _failed(api, app["guid"], clash, [_v3("app.py", FILES["app.py"])])
    assert "'app.py'" in detail and "both" in detail


# --- hostile and broken uploads ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "fragment"),
    [
        (_zip({"../evil.txt": b"x"}), '"../evil.txt": leaves'),
        (_zip({"a/../../evil.txt": b"x"}), '"a/../../evil.txt": leaves'),
        (_zip({"/etc/evil": b"x"}), '"/etc/evil": name is an absolute path'),
        (_zip({"C:/evil": b"x"}), '"C:/evil": name starts with a Windows drive letter'),
        (_zip({"a\\..\\evil": b"x"}), "evil"),
        (_zip({"ok.txt": b"x"}, links={"out": "../../etc/passwd"}), '"out": is a symbolic link'),
        (_zip({"ok.txt": b"x"}, links={"abs": "/etc/passwd"}), '"abs": link target'),
        (_zip({"link/inner.txt": b"x"}, links={"link": "sub"}), '"link": is a symlink'),
        (_zip({"dev": b""}, modes={"dev": stat.S_IFCHR | 0o644}), '"dev": is a device'),
        (_zip({"same": b"1", "./same": b"2"}), "same"),
        (b"this is not a zip file at all", "not a readable zip archive"),
        (_zip({"zeros.bin": bytes(20 * 1024 * 1024)}), '"zeros.bin": expands more than'),
    ],
)
async def test_hostile_zips_fail_and_write_nothing_outside(
    api: Api, bits: bytes, fragment: str
) -> None:
    app = await _app(api)
    detail = await _failed(api, app["guid"], bits)
    assert fragment in detail, detail
    root = _blob_root(api)
    assert not list(root.parent.rglob("evil*"))
    assert not [n for n in _stored(api) if n.startswith(("package_uploads/", "packages/", "tmp/"))]


async def test_corrupt_entry_fails_naming_it(api: Api) -> None:
    app = await _app(api)
    data = bytearray(_zip({"a.txt": b"A" * 5000}))
    data[40:60] = b"\xff" * 20  # inside the compressed data of the only entry
    detail = await _failed(api, app["guid"], bytes(data))
    assert "'a.txt'" in detail or "zip" in detail


async def test_size_limits(api: Api) -> None:
    app = await _app(api)
    packages = api.parts.controller.packages
    packages.limits = PackageLimits(max_file_bytes=1000, max_expanded_bytes=1500, max_files=3)
    detail = await _failed(api, app["guid"], _zip({"big.bin": os.urandom(1001)}))
    assert "'big.bin'" in detail and "1000 bytes" in detail
    detail = await _failed(api, app["guid"], _zip({"a": os.urandom(800), "b": os.urandom(800)}))
    assert "1500 bytes" in detail
    detail = await _failed(api, app["guid"], _zip({str(n): b"x" for n in range(4)}))
    assert "more than 3" in detail

    packages.max_package_bytes = 10_000
    created = (await _create(api, app["guid"])).json()
    too_big = await _upload(api, created["guid"], os.urandom(20_000))
    assert too_big.status_code == 413, too_big.text
    still = (await api.http.get(f"/v3/packages/{created['guid']}", headers=api.admin)).json()
    assert still["state"] == "AWAITING_UPLOAD"
    assert not [n for n in _stored(api) if n.startswith(("package_uploads/", "tmp/"))]


@pytest.mark.parametrize(
    ("resources", "fragment"),
    [
        ("{not json", "JSON list"),
        ('{"path": "x"}', "JSON list"),
        ("[1]", "object"),
        ('[{"path": "x"}]', "must have"),
        (json.dumps([{**_v3("x", b"x"), "extra": 1}]), "must have"),
        (json.dumps([{**_v3("x", b"x"), "checksum": {"value": "abc"}}]), "sha1"),
        (json.dumps([{**_v3("x", b"x"), "size_in_bytes": -1}]), "non-negative"),
        (json.dumps([{**_v3("x", b"x"), "size_in_bytes": "1"}]), "non-negative"),
        (json.dumps([{**_v3("x", b"x"), "mode": "rwx"}]), "octal"),
        (json.dumps([_v3("../../etc/passwd", b"x")]), "'../../etc/passwd'"),
        (json.dumps([_v3("/etc/passwd", b"x")]), "'/etc/passwd'"),
        (json.dumps([_v3("a\\b", b"x")]), "unsafe"),
        (json.dumps([{"fn": "../x", "size": 1, "sha1": _sha1(b"x")}]), "'../x'"),
    ],
)
async def test_bad_resources_are_422(api: Api, resources: str, fragment: str) -> None:
    app = await _app(api)
    created = (await _create(api, app["guid"])).json()
    response = await _upload(api, created["guid"], None, resources)
    assert response.status_code == 422, response.text
    assert fragment in _error(response)["detail"]
    still = (await api.http.get(f"/v3/packages/{created['guid']}", headers=api.admin)).json()
    assert still["state"] == "AWAITING_UPLOAD"


async def test_upload_bodies_that_are_not_a_package(api: Api) -> None:
    app = await _app(api)
    guid = (await _create(api, app["guid"])).json()["guid"]
    url = f"/v3/packages/{guid}/upload"
    not_multipart = await api.http.post(url, headers=api.admin, content=b"PK")
    assert not_multipart.status_code == 422
    other = await _upload(api, guid)  # only an unknown field
    assert other.status_code == 422 and "Unknown field" in _error(other)["detail"]
    empty = await _upload(api, guid, b"")
    assert empty.status_code == 422 and "empty" in _error(empty)["detail"]
    nothing = await api.http.post(url, headers=api.admin, files={"bits": ("a", b"", "x")}, data={})
    assert nothing.status_code == 422
    assert (await api.http.get(f"/v3/packages/{guid}", headers=api.admin)).json()[
        "state"
    ] == "AWAITING_UPLOAD"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"type": "docker", "relationships": {"app": {"data": {"guid": "x"}}}}, "not supported"),
        ({"type": "bits"}, "relationships"),
        ({"type": "bits", "relationships": {"app": {"data": {"guid": 1}}}}, "guid"),
        ({"type": "bits", "relationships": {"app": {"data": {"guid": "x"}}}, "x": 1}, "x"),
    ],
)
async def test_wrong_create_bodies(api: Api, body: Any, fragment: str) -> None:
    app = await _app(api)
    if body.get("relationships", {}).get("app", {}).get("data", {}).get("guid") == "x":
        body["relationships"]["app"]["data"]["guid"] = app["guid"]
    response = await api.http.post("/v3/packages", headers=api.admin, json=body)
    assert response.status_code == 422, response.text
    assert fragment in _error(response)["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"resources": {}},
        {"resources": [{"checksum": {"value": "abc"}, "size_in_bytes": 1}]},
        {"resources": [{"checksum": {"value": "a" * 40}, "size_in_bytes": "1"}]},
        {"resources": [{"checksum": {"value": "a" * 40}, "size_in_bytes": -1}]},
        {"resources": [{"checksum": {"value": "a" * 40}, "size_in_bytes": 1, "x": 1}]},
        {"resources": [{"checksum": {"value": "a" * 40}, "size_in_bytes": 1}] * 10_001},
    ],
)
async def test_wrong_resource_match_bodies(api: Api, body: Any) -> None:
    response = await api.http.post("/v3/resource_matches", headers=api.admin, json=body)
    assert response.status_code == 422, response.text[:300]


# --- who may do what --------------------------------------------------------------------------


async def test_other_users_and_roles(api: Api) -> None:
    org = await api.org()
    space = await api.space(org["guid"])
    app = await api.app(space["guid"])
    package = await _package(api, app["guid"], _zip(FILES))
    guid = package["guid"]

    stranger_guid, stranger = await api.user("stranger")
    assert (await api.http.get(f"/v3/packages/{guid}", headers=stranger)).status_code == 404
    listed = await api.http.get("/v3/packages", headers=stranger)
    assert listed.json()["pagination"]["total_results"] == 0
    assert (await _create(api, app["guid"], stranger)).status_code == 422
    assert (await _upload(api, guid, _zip(FILES), headers=stranger)).status_code == 404
    assert (await api.http.delete(f"/v3/packages/{guid}", headers=stranger)).status_code == 404
    assert (
        await api.http.get(f"/v3/apps/{app['guid']}/packages", headers=stranger)
    ).status_code == 404
    # Resource matching is open to any authenticated user, as in CF.
    asked = {"resources": [_v3("app.py", FILES["app.py"])]}
    matched = await api.http.post("/v3/resource_matches", headers=stranger, json=asked)
    assert matched.status_code == 201 and len(matched.json()["resources"]) == 1
    anonymous = await api.http.post("/v3/resource_matches", json=asked)
    assert anonymous.status_code == 401

    auditor_guid, auditor = await api.user("auditor")
    assert (await api.role("organization_user", auditor_guid, org=org["guid"])).status_code == 201
    assert (await api.role("space_auditor", auditor_guid, space=space["guid"])).status_code == 201
    seen = await api.http.get(f"/v3/packages/{guid}", headers=auditor)
    assert seen.status_code == 200 and seen.json()["state"] == "READY"
    assert (await _create(api, app["guid"], auditor)).status_code == 403
    fresh = (await _create(api, app["guid"])).json()["guid"]
    assert (await _upload(api, fresh, _zip(FILES), headers=auditor)).status_code == 403
    assert (await api.http.delete(f"/v3/packages/{guid}", headers=auditor)).status_code == 403
    assert (await api.http.get(f"/v3/packages/{guid}/download", headers=auditor)).status_code == 403

    developer_guid, developer = await api.user("developer")
    assert (await api.role("organization_user", developer_guid, org=org["guid"])).status_code == 201
    assert (
        await api.role("space_developer", developer_guid, space=space["guid"])
    ).status_code == 201
    mine = await _create(api, app["guid"], developer)
    assert mine.status_code == 201
    uploaded = await _upload(
        api, mine.json()["guid"], None, [_v3("app.py", FILES["app.py"])], developer
    )
    assert uploaded.status_code == 200, uploaded.text
    assert (await _settled(api, mine.json()["guid"]))["state"] == "READY"
    del stranger_guid


async def test_deleting_the_app_sweeps_package_blobs(api: Api) -> None:
    app = await _app(api)
    package = await _package(api, app["guid"], _zip(FILES))
    assert f"packages/{package['guid']}.json" in _stored(api)
    deleted = await api.http.delete(f"/v3/apps/{app['guid']}", headers=api.admin)
    assert deleted.status_code == 202
    job = await api.wait_job(deleted.headers["location"])
    assert job["state"] == "COMPLETE"
    for _ in range(200):
        if f"packages/{package['guid']}.json" not in _stored(api):
            break
        await asyncio.sleep(0.02)
    assert f"packages/{package['guid']}.json" not in _stored(api)
    # The files stay: other packages may share them.
    assert f"files/{_sha1(FILES['app.py'])[:2]}/{_sha1(FILES['app.py'])}" in _stored(api)

"""`overcast stage` and `overcast buildpacks` against a fake API: resource matching, the zip
and `resources` of the upload, the package and build outcomes, the `STG` lines printed while
the build runs, and the current droplet set at the end."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from overcast.cli import staging_commands
from overcast.client.bits import AppFile
from overcast.client.push import files_summary, format_size
from tests.unit.cli.fake_server import (
    FakeApi,
    FakeContext,
    app_resource,
    cf_error,
    page,
    run,
    with_app,
)

APP_GUID = "app-guid"
PACKAGE_GUID = "package-guid"
BUILD_GUID = "build-guid"
DROPLET_GUID = "droplet-guid"
NANOS = 1_763_719_200_000_000_000


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi()
    context = FakeContext(tmp_path / "home", fake)
    monkeypatch.setattr(staging_commands, "current", lambda: context)
    monkeypatch.setattr(staging_commands, "LOG_SETTLE_SECONDS", 0.0)
    return fake


def sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def log(line: str, *, source: str = "STG", offset: int = 0) -> dict[str, Any]:
    return {
        "timestamp": "2025-11-21T10:00:00Z",
        "timestamp_ns": NANOS + offset,
        "source": source,
        "stream": "stdout",
        "line": line,
        "instance_guid": None,
    }


def multipart(request: httpx.Request) -> dict[str, bytes]:
    """The fields of a multipart/form-data body, by name."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.read())
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(payload, bytes)
        fields[name] = payload
    return fields


def package(state: str, error: str | None = None) -> dict[str, Any]:
    return {
        "guid": PACKAGE_GUID,
        "type": "bits",
        "state": state,
        "created_at": "2026-01-01T00:00:00Z",
        "data": {"checksum": {"type": "sha256", "value": None}, "error": error},
        "links": {},
    }


def build(state: str, error: str | None = None) -> dict[str, Any]:
    return {
        "guid": BUILD_GUID,
        "state": state,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "error": error,
        "lifecycle": {"type": "buildpack", "data": {"buildpacks": [], "stack": "cflinuxfs4"}},
        "package": {"guid": PACKAGE_GUID},
        "droplet": {"guid": DROPLET_GUID} if state == "STAGED" else None,
        "created_by": {"guid": "user-guid", "name": "dev-user", "email": None},
        "links": {},
    }


class Staging:
    """The routes of one staging, and what the command sent them."""

    def __init__(self, api: FakeApi, *, known: set[bytes] | None = None) -> None:
        self.api = api
        self.known = {sha1(data) for data in known or set()}
        self.package_state = "READY"
        self.package_error: str | None = None
        self.build_states = ["STAGING", "STAGING", "STAGED"]
        self.build_error: str | None = None
        self.upload: dict[str, bytes] = {}
        self.build_body: dict[str, Any] = {}
        self.droplet_body: dict[str, Any] = {}
        self.offered: list[dict[str, Any]] = []
        # The recent log lines: the first poll sees `before`, every later one `before + during`.
        self.before = [
            log("an earlier staging", offset=-10),
            log("running", source="APP/PROC/WEB/0"),
        ]
        self.during = [
            log("-----> Python Buildpack", offset=1),
            log("serving", source="APP/PROC/WEB/0", offset=2),
            log("       Installing requirements", offset=3),
            log("Uploading droplet...", offset=4),
        ]
        self.log_polls = 0
        with_app(api)
        api.on("POST", "/v3/resource_matches", self.resource_matches)
        api.on("POST", "/v3/packages", httpx.Response(201, json=package("AWAITING_UPLOAD")))
        api.on("POST", f"/v3/packages/{PACKAGE_GUID}/upload", self.upload_package)
        api.on("GET", f"/v3/packages/{PACKAGE_GUID}", self.get_package)
        api.on("POST", "/v3/builds", self.create_build)
        api.on("GET", f"/v3/builds/{BUILD_GUID}", self.get_build)
        api.on("GET", f"/v3/x/apps/{APP_GUID}/logs", self.logs)
        api.on(
            "PATCH",
            f"/v3/apps/{APP_GUID}/relationships/current_droplet",
            self.set_droplet,
        )
        api.on(
            "GET",
            f"/v3/droplets/{DROPLET_GUID}",
            {
                "guid": DROPLET_GUID,
                "state": "STAGED",
                "created_at": "2026-01-01T00:00:00Z",
                "links": {},
                "process_types": {"worker": "python worker.py", "web": "python app.py"},
                "buildpacks": [
                    {
                        "name": "python",
                        "detect_output": "python",
                        "buildpack_name": "python",
                        "version": "1.2.0",
                    }
                ],
            },
        )

    def resource_matches(self, request: httpx.Request) -> httpx.Response:
        self.offered = json.loads(request.read())["resources"]
        held = [item for item in self.offered if item["checksum"]["value"] in self.known]
        return httpx.Response(201, json={"resources": held})

    def upload_package(self, request: httpx.Request) -> httpx.Response:
        self.upload = multipart(request)
        return httpx.Response(200, json=package("PROCESSING_UPLOAD"))

    def get_package(self, _request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=package(self.package_state, self.package_error))

    def create_build(self, request: httpx.Request) -> httpx.Response:
        self.build_body = json.loads(request.read())
        return httpx.Response(201, json=build("STAGING"))

    def get_build(self, _request: httpx.Request) -> httpx.Response:
        state = self.build_states.pop(0) if len(self.build_states) > 1 else self.build_states[0]
        return httpx.Response(
            200, json=build(state, self.build_error if state == "FAILED" else None)
        )

    def logs(self, _request: httpx.Request) -> httpx.Response:
        self.log_polls += 1
        lines = self.before if self.log_polls == 1 else self.before + self.during
        return httpx.Response(200, json={"resources": lines})

    def set_droplet(self, request: httpx.Request) -> httpx.Response:
        self.droplet_body = json.loads(request.read())
        return httpx.Response(200, json={"data": {"guid": DROPLET_GUID}, "links": {}})

    def zipped(self) -> dict[str, bytes]:
        with zipfile.ZipFile(io.BytesIO(self.upload["bits"])) as archive:
            return {name: archive.read(name) for name in archive.namelist()}

    def resources(self) -> list[dict[str, Any]]:
        loaded: list[dict[str, Any]] = json.loads(self.upload["resources"])
        return loaded


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "lib").mkdir(parents=True)
    (root / "app.py").write_text("print('app')\n")
    (root / "requirements.txt").write_text("flask\n")
    (root / "lib" / "util.py").write_text("X = 1\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "app.pyc").write_bytes(b"\0\0")
    return root


def stg_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("   ")]


# --- stage ---------------------------------------------------------------------------------------


def test_stage_uploads_only_unknown_files_and_sets_the_droplet(api: FakeApi, source: Path) -> None:
    staging = Staging(api, known={b"flask\n", b"X = 1\n"})
    result = run("stage", "web", str(source))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"Staging app web from {source} in org acme / space dev as dev-user..." in out
    assert "2 files unchanged, 1 uploaded (13 B)" in out

    # Every file was offered (largest first), none of the ignored ones.
    assert sorted(item["path"] for item in staging.offered) == [
        "app.py",
        "lib/util.py",
        "requirements.txt",
    ]
    assert {item["mode"] for item in staging.offered} == {"644"}
    # The zip holds the unknown file only; the resources name the others.
    assert staging.zipped() == {"app.py": b"print('app')\n"}
    assert sorted(item["path"] for item in staging.resources()) == [
        "lib/util.py",
        "requirements.txt",
    ]
    assert staging.resources()[0]["checksum"]["value"] in staging.known

    # No lifecycle: the app's buildpacks (or detection) decide.
    assert staging.build_body == {"package": {"guid": PACKAGE_GUID}}
    # The STG lines of this staging, once each, in order; no APP lines, nothing from before.
    assert stg_lines(out) == [
        "-----> Python Buildpack",
        "Installing requirements",
        "Uploading droplet...",
    ]
    assert staging.droplet_body == {"data": {"guid": DROPLET_GUID}}
    assert out.splitlines()[-1] == (
        f"Staged app web: droplet {DROPLET_GUID} is now current (buildpack python 1.2.0; "
        "process types web, worker); 13 B uploaded, 12 B unchanged."
    )
    assert result.stderr == ""


def test_stage_with_buildpacks_and_nothing_new(
    api: FakeApi, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = Staging(api, known={b"print('app')\n", b"flask\n", b"X = 1\n"})
    staging.build_states = ["STAGED"]
    monkeypatch.chdir(source)
    result = run("stage", "web", "-b", "python", "--buildpack", "https://example.com/bp.git")
    assert result.exit_code == 0, result.output
    assert "3 files unchanged, 0 uploaded (0 B)" in result.stdout
    assert staging.zipped() == {}
    assert len(staging.resources()) == 3
    assert staging.build_body == {
        "package": {"guid": PACKAGE_GUID},
        "lifecycle": {
            "type": "buildpack",
            "data": {"buildpacks": ["python", "https://example.com/bp.git"]},
        },
    }
    assert "13 B unchanged" not in result.stdout  # the sizes add up: 25 B
    assert result.stdout.splitlines()[-1].endswith("; 0 B uploaded, 25 B unchanged.")


def test_stage_a_failed_build(api: FakeApi, source: Path) -> None:
    staging = Staging(api)
    staging.build_states = ["STAGING", "FAILED"]
    staging.build_error = (
        "BuildpackCompileFailed - App staging failed in the buildpack compile phase"
    )
    result = run("stage", "web", str(source))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Staging app web failed: BuildpackCompileFailed - App staging failed in the buildpack "
        "compile phase"
    )
    # The output of the failed staging was shown first; no droplet was set.
    assert "Installing requirements" in stg_lines(result.stdout)
    assert staging.droplet_body == {}
    assert "0 files unchanged, 3 uploaded (25 B)" in result.stdout


def test_stage_a_failed_package(api: FakeApi, source: Path) -> None:
    staging = Staging(api)
    staging.package_state = "FAILED"
    staging.package_error = "The package has a corrupt entry: 'app.py'"
    result = run("stage", "web", str(source))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "The upload of app web failed: The package has a corrupt entry: 'app.py'"
    )
    assert "POST" not in [r.method for r in api.requests if r.url.path == "/v3/builds"]


def test_stage_without_the_log_api(api: FakeApi, source: Path) -> None:
    """A server without /v3/x logs (a plain CF): staging is followed without its output."""
    staging = Staging(api)
    api.on("GET", f"/v3/x/apps/{APP_GUID}/logs", cf_error(404, 10000, "CF-NotFound", "Unknown"))
    result = run("stage", "web", str(source))
    assert result.exit_code == 0, result.output
    assert stg_lines(result.stdout) == []
    assert staging.droplet_body == {"data": {"guid": DROPLET_GUID}}
    # Asked once, then no more.
    assert api.paths().count(f"/v3/x/apps/{APP_GUID}/logs") == 1


def test_stage_times_out(api: FakeApi, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staging = Staging(api)
    staging.build_states = ["STAGING"]
    monkeypatch.setattr(staging_commands, "STAGING_TIMEOUT_SECONDS", 0.0)
    result = run("stage", "web", str(source))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"App web is still staging after 0s (build {BUILD_GUID}); see: overcast logs web --recent"
    )


def test_stage_an_unknown_app(api: FakeApi, source: Path) -> None:
    with_app(api)
    result = run("stage", "nope", str(source))
    assert result.exit_code == 1
    assert result.stderr.strip() == "App 'nope' not found in space 'dev'"


def test_stage_refuses_a_link_leading_out(api: FakeApi, source: Path) -> None:
    Staging(api)
    (source / "passwd").symlink_to("/etc/passwd")
    result = run("stage", "web", str(source))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "passwd is a symbolic link to /etc/passwd, outside the app directory"
    )
    assert "/v3/packages" not in api.paths("POST")


def test_stage_an_empty_directory(api: FakeApi, tmp_path: Path) -> None:
    Staging(api)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".cfignore").write_text("*\n")
    result = run("stage", "web", str(empty))
    assert result.exit_code == 1
    assert "There are no files to stage in" in result.stderr


def test_stage_a_path_that_is_not_a_directory(api: FakeApi, source: Path) -> None:
    Staging(api)
    result = run("stage", "web", str(source / "app.py"))
    assert result.exit_code == 2  # typer's usage error
    assert api.requests == []


# --- buildpacks ----------------------------------------------------------------------------------


def buildpack(name: str, position: int, stack: str | None = "cflinuxfs4") -> dict[str, Any]:
    return {
        "guid": f"{name}-guid",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "name": name,
        "state": "READY",
        "filename": f"{name}_buildpack.zip",
        "stack": stack,
        "position": position,
        "lifecycle": "buildpack",
        "enabled": True,
        "locked": True,
        "metadata": {"labels": {}, "annotations": {}},
        "links": {},
    }


def test_buildpacks_table(api: FakeApi) -> None:
    api.on(
        "GET",
        "/v3/buildpacks",
        page([buildpack("nodejs", 2), buildpack("python", 1), buildpack("static", 3, None)]),
    )
    result = run("buildpacks")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
    assert rows[0] == ["position", "name", "stack", "enabled", "locked"]
    assert rows[-3:] == [
        ["1", "python", "cflinuxfs4", "true", "true"],
        ["2", "nodejs", "cflinuxfs4", "true", "true"],
        ["3", "static", "-", "true", "true"],
    ]


def test_no_buildpacks(api: FakeApi) -> None:
    api.on("GET", "/v3/buildpacks", page([]))
    result = run("buildpacks")
    assert result.exit_code == 0
    assert result.stdout.strip() == "No buildpacks are installed."


# --- formatting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KB"),
        (3174, "3.1 KB"),
        (5 * 1024**2, "5 MB"),
        (int(1.5 * 1024**3), "1.5 GB"),
        (3 * 1024**5, "3072 TB"),
    ],
)
def test_format_size(count: int, text: str) -> None:
    assert format_size(count) == text


def test_files_summary() -> None:
    def files(*sizes: int) -> Iterator[AppFile]:
        for index, size in enumerate(sizes):
            yield AppFile(f"f{index}", size, "0" * 40, "644")

    assert files_summary(list(files(1)), list(files(3000, 174))) == (
        "1 file unchanged, 2 uploaded (3.1 KB)"
    )
    assert files_summary(list(files(*[1] * 12)), []) == "12 files unchanged, 0 uploaded (0 B)"


def test_the_commands_are_registered() -> None:
    help_text = run("--help").stdout
    assert "stage" in help_text and "buildpacks" in help_text
    assert app_resource()["guid"] == APP_GUID  # the fake app the routes above are keyed on

"""Issue 4's "done when", on the memory bus and on NATS: every example is uploaded as a package,
staged by `POST /v3/builds` on a real cell, and its droplet runs there and answers; a re-push
sends no unchanged file; a failing buildpack (fetched by git URL) gives a FAILED build with its
output in the `STG` logs."""

from __future__ import annotations

import asyncio
import hashlib
import io
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import httpx

from overcast.testing.platform import Platform, eventually, instance_answers

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


async def _run(platform: Platform, app_guid: str, droplet_guid: str) -> list[dict[str, Any]]:
    await platform.set_droplet(app_guid, droplet_guid)
    await platform.post(f"/v3/apps/{app_guid}/actions/start")
    return await platform.wait_running(app_guid, 1, within=60)


async def _stg_lines(platform: Platform, app_guid: str) -> list[str]:
    body = await platform.get(f"/v3/x/apps/{app_guid}/logs?limit=1000")
    return [entry["line"] for entry in body["resources"] if entry["source"] == "STG"]


async def test_every_example_stages_on_a_cell_and_runs(platform: Platform) -> None:
    space = await platform.space()
    names = ["stdlib", "flask", "node", "static", "worker"]
    pushed = await asyncio.gather(
        *(platform.push_source(space, name, EXAMPLES / name) for name in names)
    )
    builds = {name: build for name, (_, build) in zip(names, pushed, strict=True)}
    apps = {name: app for name, (app, _) in zip(names, pushed, strict=True)}
    for name, build in builds.items():
        assert build["state"] == "STAGED", (name, build["error"])
        assert build["droplet"]["guid"]
    droplets = {
        name: await platform.get(f"/v3/droplets/{build['droplet']['guid']}")
        for name, build in builds.items()
    }
    assert droplets["flask"]["buildpacks"][0]["name"] == "python"
    assert droplets["node"]["buildpacks"][0]["name"] == "nodejs"
    assert droplets["static"]["buildpacks"][0]["name"] == "static"
    assert droplets["flask"]["process_types"]["web"].startswith("flask")
    assert "worker" in droplets["worker"]["process_types"]
    for droplet in droplets.values():
        assert droplet["state"] == "STAGED"
        assert len(droplet["checksum"]["value"]) == 64

    for name in ("stdlib", "flask", "node"):
        stats = await _run(platform, apps[name]["guid"], builds[name]["droplet"]["guid"])
        (answer,) = await instance_answers(stats)
        assert answer["app"] == name
    stats = await _run(platform, apps["static"]["guid"], builds["static"]["droplet"]["guid"])
    entry = stats[0]
    async with httpx.AsyncClient(timeout=5) as http:
        page = await http.get(f"http://{entry['host']}:{entry['instance_ports'][0]['external']}/")
    assert page.status_code == 200
    assert "Overcast static example" in page.text

    # The worker: no web instance, one worker instance that logs.
    worker = apps["worker"]["guid"]
    await platform.set_droplet(worker, builds["worker"]["droplet"]["guid"])
    await platform.post(f"/v3/apps/{worker}/processes/web/actions/scale", {"instances": 0})
    await platform.post(f"/v3/apps/{worker}/processes/worker/actions/scale", {"instances": 1})
    await platform.post(f"/v3/apps/{worker}/actions/start")

    async def ticking() -> bool:
        body = await platform.get(f"/v3/x/apps/{worker}/logs?limit=1000")
        return any("worker tick" in entry["line"] for entry in body["resources"])

    await eventually(ticking, within=30)

    # Staging output reached the app's logs as STG lines, cell progress included.
    lines = await _stg_lines(platform, apps["flask"]["guid"])
    assert "Downloading app package..." in lines
    assert any("Installing" in line or "pip" in line.lower() for line in lines), lines
    assert any(line.startswith("Uploading droplet") for line in lines)


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()  # noqa: S324 - CF's resource matching uses sha1


async def test_a_repush_uploads_no_unchanged_file(platform: Platform) -> None:
    space = await platform.space()
    app, first = await platform.push_source(space, "again", EXAMPLES / "stdlib")
    assert first["state"] == "STAGED"
    files = [path for path in sorted((EXAMPLES / "stdlib").rglob("*")) if path.is_file()]
    offered = [
        {
            "path": str(path.relative_to(EXAMPLES / "stdlib")),
            "size_in_bytes": path.stat().st_size,
            "checksum": {"value": _sha1(path.read_bytes())},
            "mode": "644",
        }
        for path in files
    ]
    matched = (await platform.post("/v3/resource_matches", {"resources": offered})).json()
    assert len(matched["resources"]) == len(offered)
    # Nothing is new: the upload carries an empty zip and the matched list.
    package = await platform.upload_package(
        app["guid"], _empty_zip(), resources=matched["resources"]
    )
    assert package["data"]["checksum"]["value"]
    second = await platform.stage(package["guid"])
    assert second["state"] == "STAGED", second["error"]
    stats = await _run(platform, app["guid"], second["droplet"]["guid"])
    (answer,) = await instance_answers(stats)
    assert answer["app"] == "stdlib"
    # The second staging ran on the cell that staged the app first (its cache is there).
    builds = await platform.get(f"/v3/apps/{app['guid']}/builds")
    assert len(builds["resources"]) == 2


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w"):
        pass
    return buffer.getvalue()


def _git_buildpack(root: Path, compile_script: str) -> str:
    """A buildpack in a local git repository; its file:// URL."""
    (root / "bin").mkdir(parents=True)
    scripts = {
        "detect": "#!/bin/sh\necho custom\n",
        "compile": compile_script,
        "release": "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  web: ./run.sh\\n'\n",
    }
    for name, text in scripts.items():
        path = root / "bin" / name
        path.write_text(text)
        path.chmod(0o755)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "buildpack"], check=True)
    return f"file://{root}"


async def test_a_failing_buildpack_fails_the_build_with_its_output_in_the_logs(
    platform: Platform, tmp_path: Path
) -> None:
    url = _git_buildpack(
        tmp_path / "failing-buildpack",
        "#!/bin/sh\necho 'compiling the app'\necho 'missing libfrobnicate' >&2\nexit 7\n",
    )
    space = await platform.space()
    app, build = await platform.push_source(space, "broken", EXAMPLES / "stdlib", buildpacks=[url])
    assert build["state"] == "FAILED"
    assert build["droplet"] is None
    assert build["error"].startswith("BuildpackCompileFailed - ")
    assert "exited with code 7" in build["error"]
    lines = await _stg_lines(platform, app["guid"])
    assert "compiling the app" in lines
    assert "missing libfrobnicate" in lines
    assert any(line.startswith("Staging failed:") for line in lines)
    droplets = await platform.get(f"/v3/apps/{app['guid']}/droplets")
    assert [d["state"] for d in droplets["resources"]] == ["FAILED"]


async def test_a_git_buildpack_stages_and_its_release_gives_the_command(
    platform: Platform, tmp_path: Path
) -> None:
    url = _git_buildpack(
        tmp_path / "shell-buildpack",
        "#!/bin/sh\nset -e\nprintf '#!/bin/sh\\nexec python3 app.py\\n' > \"$1/run.sh\"\n"
        'chmod +x "$1/run.sh"\necho "compiled with a git buildpack"\n',
    )
    space = await platform.space()
    app, build = await platform.push_source(space, "custom", EXAMPLES / "stdlib", buildpacks=[url])
    assert build["state"] == "STAGED", build["error"]
    droplet = await platform.get(f"/v3/droplets/{build['droplet']['guid']}")
    assert droplet["process_types"] == {"web": "./run.sh"}
    assert droplet["buildpacks"][0]["name"] == url
    stats = await _run(platform, app["guid"], build["droplet"]["guid"])
    (answer,) = await instance_answers(stats)
    assert answer["app"] == "stdlib"

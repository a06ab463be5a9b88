"""Each example app staged by the built-in buildpacks, unpacked elsewhere after the staging
directories are gone, and run as a cell runs it. The Flask app is staged twice on one cache
(cold, then warm) and shared by the module's tests; pip needs PyPI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from overcast.testing.servers import missing_server
from tests.integration.staging.helpers import (
    EXAMPLES,
    Staged,
    get,
    run_instance,
    stage_app,
    unpack,
)


@dataclass
class Moved:
    """A staged example whose droplet was unpacked into `instance` after its work directory
    (and, for Flask, its cache) was deleted."""

    staged: Staged
    instance: Path
    info: dict[str, Any]


def _stage_and_move(root: Path, name: str, cache: Path | None = None) -> Moved:
    cache = cache or root / f"{name}-cache"
    staged = asyncio.run(stage_app(EXAMPLES / name, root / f"{name}-work", cache))
    digest = hashlib.sha256(staged.result.droplet_path.read_bytes()).hexdigest()
    assert digest == staged.result.sha256
    assert staged.result.size == staged.result.droplet_path.stat().st_size
    info = unpack(staged.result.droplet_path, root / f"{name}-instance")
    shutil.rmtree(root / f"{name}-work")
    return Moved(staged=staged, instance=root / f"{name}-instance", info=info)


@pytest.fixture(scope="module")
def flask_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Staged, Moved]:
    """(the cold staging, the warm staging moved and runnable)."""
    root = tmp_path_factory.mktemp("flask")
    cache = root / "cache"
    cold = asyncio.run(stage_app(EXAMPLES / "flask", root / "cold", cache))
    shutil.rmtree(root / "cold")
    warm = _stage_and_move(root, "flask", cache)
    shutil.rmtree(cache)
    print(f"\nflask staging: cold {cold.seconds:.1f}s, warm {warm.staged.seconds:.1f}s")
    return cold, warm


def test_flask_cold_then_warm_cache(flask_app: tuple[Staged, Moved]) -> None:
    cold, warm = flask_app
    assert "Downloading" in cold.text or "Collecting flask" in cold.text.lower()
    assert "Successfully installed" in cold.text and "Flask-3.0.3" in cold.text
    assert "Reusing the cached virtualenv" in warm.staged.text
    assert "Downloading" not in warm.staged.text
    assert warm.staged.seconds < cold.seconds


def test_flask_droplet_staging_info(flask_app: tuple[Staged, Moved]) -> None:
    _, warm = flask_app
    web = 'flask --app app run --host "${CF_INSTANCE_IP:-0.0.0.0}" --port "$PORT"'
    assert warm.info["detected_buildpack"] == "python"
    assert warm.info["process_types"] == {"web": web}
    assert warm.info["start_command"] == web
    assert warm.info["buildpacks"] == [
        {"name": "python", "version": "1.0.0", "detect_output": "python 1.0.0"}
    ]
    assert warm.staged.result.process_types == {"web": web}
    venv = warm.instance / "app" / ".venv"
    assert (venv / "bin" / "python").is_file()
    assert (warm.instance / "app" / ".profile.d" / "python.sh").is_file()
    assert (venv / "bin" / "flask").read_text().startswith("#!/bin/sh\n'''exec'")


def test_flask_app_answers_from_the_moved_droplet(flask_app: tuple[Staged, Moved]) -> None:
    _, warm = flask_app
    with run_instance(warm.instance, warm.info["start_command"]) as instance:
        status, body = get(instance)
    assert status == 200
    assert json.loads(body) == {"app": "flask", "flask": "3.0.3", "index": "0"}


def test_stdlib_app(tmp_path: Path) -> None:
    moved = _stage_and_move(tmp_path, "stdlib")
    assert moved.info["process_types"] == {"web": "python app.py"}
    assert "Installing dependencies" not in moved.staged.text  # empty requirements.txt
    with run_instance(moved.instance, moved.info["start_command"]) as instance:
        status, body = get(instance)
        assert status == 200
        assert json.loads(body)["app"] == "stdlib"
        assert "request " in instance.logs() or _wait_for(instance.logs, "request ")


def test_node_app(tmp_path: Path) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing_server("node")
    moved = _stage_and_move(tmp_path, "node")
    assert moved.info["detected_buildpack"] == "nodejs"
    assert moved.info["process_types"] == {"web": "npm start"}
    assert "npm ci" in moved.staged.text
    with run_instance(moved.instance, "npm start") as instance:
        status, body = get(instance)
    assert status == 200
    assert json.loads(body)["app"] == "node"


def test_static_app(tmp_path: Path) -> None:
    moved = _stage_and_move(tmp_path, "static")
    assert moved.info["detected_buildpack"] == "static"
    with run_instance(moved.instance, moved.info["start_command"]) as instance:
        status, body = get(instance)
        assert status == 200 and b"Hello from a static site" in body
        assert get(instance, "/style.css")[0] == 200
        for hidden in ("/Staticfile", "/.static/server", "/.profile.d/", "/%2Estatic/server"):
            assert get(instance, hidden)[0] == 404, hidden
        assert get(instance, "/missing.html")[0] == 404


def test_worker_app(tmp_path: Path) -> None:
    moved = _stage_and_move(tmp_path, "worker")
    assert moved.info["detected_buildpack"] == "python"
    assert moved.info["process_types"] == {"worker": "python worker.py"}
    assert moved.info["start_command"] == ""
    with run_instance(moved.instance, moved.info["process_types"]["worker"]) as instance:
        assert _wait_for(instance.logs, "worker tick 2")
        assert instance.process.poll() is None


def _wait_for(read: Any, text: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in read():
            return True
        time.sleep(0.1)
    return False

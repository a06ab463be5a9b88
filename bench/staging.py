"""Staging time and re-push upload time, through the whole platform, with their references.

1. Staging: `POST /v3/builds` -> build STAGED (package download, buildpacks, droplet upload and
   check), for the stdlib and Flask examples, cold (a new app: empty buildpack cache) and warm
   (the same app staged again: pip's cache and the wheel are on the cell). Reference in the
   same run: the runner alone on the same source (no API, no cell, no transfers), and for
   Flask `python -m venv` + `pip install` by hand, cold and warm.
2. Re-push upload: the client's work to get a READY package (`resource_matches`, upload,
   wait for the upload job) for a synthetic app of FILES files, when nothing changed (every
   file matched: an empty zip plus the resource list) vs when every file changed (the whole
   zip).

A real controller (SQLite, job engine, API on loopback) and a real cell on the embedded bus.
Run: .venv/bin/python bench/staging.py
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from overcast.core.logging import configure_logging
from overcast.staging.runner import builtin_buildpacks, stage
from overcast.testing.platform import Platform, memory_buses, start_platform, zip_directory

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WARM_RUNS = 3
UPLOAD_RUNS = 5
FILES = 400
FILE_BYTES = 16 * 1024


async def _staged_seconds(platform: Platform, package_guid: str) -> float:
    started = time.perf_counter()
    build = await platform.stage(package_guid)
    assert build["state"] == "STAGED", build["error"]
    return time.perf_counter() - started


async def platform_staging(platform: Platform, space: str, name: str) -> tuple[float, float]:
    """(cold, median warm) seconds for a new app of example `name`."""
    app = await platform.create_app(space, f"{name}-{time.monotonic_ns()}")
    package = await platform.upload_package(app["guid"], zip_directory(EXAMPLES / name))
    cold = await _staged_seconds(platform, package["guid"])
    warm = [await _staged_seconds(platform, package["guid"]) for _ in range(WARM_RUNS)]
    return cold, statistics.median(warm)


async def runner_staging(name: str, root: Path) -> tuple[float, float]:
    """(cold, median warm) seconds of the runner alone."""
    cache = root / f"cache-{name}"

    async def output(_line: str, _stream: str) -> None:
        pass

    async def once(index: int) -> float:
        started = time.perf_counter()
        await stage(
            EXAMPLES / name,
            buildpacks=builtin_buildpacks(),
            cache_dir=cache,
            env={"CF_STACK": "overcast-linux"},
            output=output,
            work_dir=root / f"work-{name}-{index}",
        )
        return time.perf_counter() - started

    cold = await once(0)
    warm = [await once(index) for index in range(1, WARM_RUNS + 1)]
    return cold, statistics.median(warm)


def pip_by_hand(root: Path) -> tuple[float, float]:
    """(cold, warm) seconds of `python -m venv` + `pip install -r requirements.txt`."""
    cache = root / "pip-cache"

    def once(index: int) -> float:
        venv = root / f"venv-{index}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--cache-dir",
                str(cache),
                "-r",
                str(EXAMPLES / "flask" / "requirements.txt"),
            ],
            check=True,
        )
        return time.perf_counter() - started

    return once(0), once(1)


def synthetic_app(root: Path) -> Path:
    app = root / "synthetic"
    for index in range(FILES):
        path = app / f"module_{index // 50}" / f"file_{index}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(FILE_BYTES // 2).hex().encode())
    return app


def _resources(app: Path) -> list[dict[str, Any]]:
    return [
        {
            "path": str(path.relative_to(app)),
            "size_in_bytes": path.stat().st_size,
            "checksum": {"value": hashlib.sha1(path.read_bytes()).hexdigest()},  # noqa: S324
            "mode": "644",
        }
        for path in sorted(app.rglob("*"))
        if path.is_file()
    ]


def _change_every_file(app: Path) -> None:
    for path in sorted(app.rglob("*.py")):
        path.write_bytes(os.urandom(FILE_BYTES // 2).hex().encode())


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w"):
        pass
    return buffer.getvalue()


async def repush_upload(platform: Platform, app_guid: str, app: Path) -> tuple[float, int]:
    """Seconds and bytes sent for a re-push where nothing changed."""
    started = time.perf_counter()
    offered = _resources(app)
    matched = (await platform.post("/v3/resource_matches", {"resources": offered})).json()
    known = {entry["path"] for entry in matched["resources"]}
    assert len(known) == len(offered), "every file should be known"
    bits = _empty_zip()
    await platform.upload_package(app_guid, bits, resources=matched["resources"])
    return time.perf_counter() - started, len(bits)


async def full_upload(platform: Platform, app_guid: str, app: Path) -> tuple[float, int]:
    """Seconds and bytes sent when every file changed (new content each run)."""
    _change_every_file(app)
    started = time.perf_counter()
    offered = _resources(app)
    matched = (await platform.post("/v3/resource_matches", {"resources": offered})).json()
    assert matched["resources"] == [], "changed files cannot be known"
    bits = zip_directory(app)
    await platform.upload_package(app_guid, bits)
    return time.perf_counter() - started, len(bits)


def _row(label: str, *values: str) -> None:
    print(f"  {label:<46}" + "".join(f"{value:>12}" for value in values))


async def main() -> None:
    configure_logging("warning", "console")
    root = Path(tempfile.mkdtemp(prefix="overcast-bench-staging-"))
    platform = await start_platform(root / "platform", make_bus=memory_buses())
    try:
        await platform.add_cell("bench", memory_mb=16384, disk_mb=65536)
        await platform.wait_for_cells(1)
        space = await platform.space()

        print(f"Staging time, seconds (warm: median of {WARM_RUNS})")
        _row("", "cold", "warm")
        for name in ("stdlib", "flask"):
            cold, warm = await platform_staging(platform, space, name)
            _row(f"{name}: POST /v3/builds -> STAGED", f"{cold:.2f}", f"{warm:.2f}")
            cold, warm = await runner_staging(name, root)
            _row(f"{name}: the runner alone (reference)", f"{cold:.2f}", f"{warm:.2f}")
        cold, warm = pip_by_hand(root)
        _row("flask: venv + pip install by hand (reference)", f"{cold:.2f}", f"{warm:.2f}")

        app = synthetic_app(root)
        size = sum(path.stat().st_size for path in app.rglob("*") if path.is_file())
        created = await platform.create_app(space, "uploads")
        await platform.upload_package(created["guid"], zip_directory(app))  # the first push
        print(
            f"\nRe-push upload, {FILES} files, {size / 1e6:.1f} MB "
            f"(median of {UPLOAD_RUNS}: matches + upload + package READY)"
        )
        _row("", "seconds", "bytes sent")
        unchanged = [
            await repush_upload(platform, created["guid"], app) for _ in range(UPLOAD_RUNS)
        ]
        changed = [await full_upload(platform, created["guid"], app) for _ in range(UPLOAD_RUNS)]
        for label, runs in (
            ("nothing changed (resource matching)", unchanged),
            ("everything changed", changed),
        ):
            seconds = statistics.median(run[0] for run in runs)
            sent = statistics.median(run[1] for run in runs)
            _row(label, f"{seconds:.3f}", f"{sent:,.0f}")
    finally:
        await platform.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())

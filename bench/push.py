"""Push to first 200, split into phases, against a real micro cloud (`overcast up` in its own
process: controller, cell, router on SQLite and the embedded bus).

For the stdlib and Flask examples: a cold push (a new app: empty buildpack cache), warm pushes
(the same app pushed again with a changed file, so the source is uploaded and staged again
with the cell's cache), and unchanged re-pushes (nothing changed). Each is the median of RUNS;
phases: apply (the manifest), upload (resource matching, zip, upload, package READY), staging,
start (droplet set, restart, every instance RUNNING), routing (then until the route answers
200 through the router). The push runs in this process through `overcast.client.push` (what
`overcast push` does); the CLI's own start-up is measured apart (`overcast --help`).

Goals (issue 6): under 3 s for the stdlib app warm, under 1.5 s for an unchanged re-push.
Run: .venv/bin/python bench/push.py
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from overcast.client import OvercastClient
from overcast.client.push import Pusher
from overcast.models.manifest import AppManifest, Manifest
from overcast.testing.micro import MicroCloud, clean_environment

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RUNS = 5
DOMAIN = "apps.localhost"
PHASES = ("apply", "upload", "staging", "start", "routing")


def first_200(router_url: str, host: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=router_url, timeout=5) as http:
        while time.monotonic() < deadline:
            try:
                if http.get("/", headers={"Host": host}).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    raise RuntimeError(f"{host} did not answer 200 within {timeout}s")


def push_once(pusher: Pusher, router_url: str, name: str, source: Path) -> dict[str, float]:
    manifest = Manifest(applications=(AppManifest(name=name),))
    started = time.perf_counter()
    (pushed,) = pusher.push(manifest, {name: source})
    pushed_at = time.perf_counter()
    first_200(router_url, f"{name}.{DOMAIN}")
    timings = dict(pushed.timings)
    timings["routing"] = time.perf_counter() - pushed_at
    timings["total"] = time.perf_counter() - started
    return timings


def _touch(source: Path, run: int) -> None:
    (source / "bench-marker.txt").write_text(f"run {run}\n")


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in (*PHASES, "total")}


def row(label: str, timings: dict[str, float]) -> None:
    cells = "".join(f"{timings[key]:>9.2f}" for key in (*PHASES, "total"))
    print(f"  {label:<28}{cells}")


def cli_startup() -> float:
    samples = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "overcast", "--help"],
            capture_output=True,
            check=True,
            env=clean_environment(),
        )
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="overcast-bench-push-"))
    cloud = MicroCloud(root / "data")
    cloud.start()
    try:
        client = OvercastClient(cloud.api_url)
        client.login_password("admin", cloud.admin_password)
        org = client.create_org("bench")
        space = client.create_space("bench", org["guid"])
        pusher = Pusher(client, space["guid"])
        print(f"Push to first 200 (seconds; median of {RUNS}; micro cloud, 2 cores)")
        print(f"  {'':<28}" + "".join(f"{key:>9}" for key in (*PHASES, "total")))
        for example in ("stdlib", "flask"):
            source = root / example
            shutil.copytree(EXAMPLES / example, source)
            colds = []
            for run in range(RUNS if example == "stdlib" else 2):
                colds.append(push_once(pusher, cloud.router_url, f"{example}-cold-{run}", source))
            row(f"{example}, cold", medians(colds))
            name = f"{example}-app"
            push_once(pusher, cloud.router_url, name, source)
            warm = []
            for run in range(RUNS):
                _touch(source, run)
                warm.append(push_once(pusher, cloud.router_url, name, source))
            row(f"{example}, warm (one file changed)", medians(warm))
            same = [push_once(pusher, cloud.router_url, name, source) for _ in range(RUNS)]
            row(f"{example}, unchanged re-push", medians(same))
        client.close()
        print(f"\n  CLI start-up (overcast --help), added to each: {cli_startup():.2f} s")
    finally:
        cloud.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Staging the example apps and running their droplets the way a cell does: unpacked somewhere
else (the staging directories gone), `bash -c` of the launcher command in `app/` with a clean,
minimal CF environment."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from overcast.staging.archives import safe_extract
from overcast.staging.launcher import launcher_command
from overcast.staging.runner import STEP_PATH, StagingResult, builtin_buildpacks, stage
from overcast.testing.servers import free_port

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@dataclass
class Staged:
    result: StagingResult
    lines: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return "\n".join(line for line, _ in self.lines)


async def stage_app(
    source: Path,
    work_dir: Path,
    cache_dir: Path,
    *,
    requested: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> Staged:
    staged_lines: list[tuple[str, str]] = []

    async def output(line: str, stream: str) -> None:
        staged_lines.append((line, stream))

    started = time.monotonic()
    result = await stage(
        source,
        buildpacks=options.pop("buildpacks", None) or builtin_buildpacks(),
        requested=requested,
        cache_dir=cache_dir,
        env=dict(env or {"CF_STACK": "cflinuxfs4"}),
        output=output,
        work_dir=work_dir,
        **options,
    )
    return Staged(result=result, lines=staged_lines, seconds=time.monotonic() - started)


def unpack(droplet: Path, destination: Path) -> dict[str, Any]:
    """Extract the droplet safely; its staging_info.yml."""
    safe_extract(droplet, destination)
    info: dict[str, Any] = yaml.safe_load((destination / "staging_info.yml").read_text())
    return info


@dataclass
class Instance:
    process: subprocess.Popen[bytes]
    port: int
    stdout: Path

    def logs(self) -> str:
        return self.stdout.read_text(errors="replace")


def cf_environment(app: Path, port: int) -> dict[str, str]:
    return {
        "PATH": STEP_PATH,
        "HOME": str(app),
        "TMPDIR": str(app.parent / "tmp"),
        "LANG": "C.UTF-8",
        "PORT": str(port),
        "VCAP_APP_PORT": str(port),
        "VCAP_APP_HOST": "0.0.0.0",
        "CF_INSTANCE_IP": "127.0.0.1",
        "CF_INSTANCE_PORT": str(port),
        "CF_INSTANCE_INDEX": "0",
        "INSTANCE_INDEX": "0",
        "MEMORY_LIMIT": "256m",
    }


@contextlib.contextmanager
def run_instance(instance_dir: Path, command: str) -> Iterator[Instance]:
    """Run `command` from `instance_dir/app` as a cell would; killed (its group) on exit."""
    app = instance_dir / "app"
    (instance_dir / "tmp").mkdir(exist_ok=True)
    port = free_port()
    stdout = instance_dir / "stdout.log"
    with stdout.open("wb") as sink:
        process = subprocess.Popen(
            ["/bin/bash", "-c", launcher_command(command)],
            cwd=app,
            env=cf_environment(app, port),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Instance(process=process, port=port, stdout=stdout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def get(instance: Instance, path: str = "/", timeout: float = 30.0) -> tuple[int, bytes]:
    """The first answer of the instance at `path` (retrying until it listens)."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{instance.port}{path}"
    while True:
        if instance.process.poll() is not None:
            raise AssertionError(
                f"the app exited ({instance.process.returncode}):\n{instance.logs()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the app never answered at {url}:\n{instance.logs()}"
                ) from None
            time.sleep(0.1)

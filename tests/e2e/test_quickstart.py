"""The README's quickstart, run exactly as written: the `quickstart:up` block starts the micro
cloud, the `quickstart:push` block logs in, pushes examples/stdlib and curls it through the
router. Only HOME is the test's own (so `~/.overcast` is a fresh one); the micro cloud listens
on its default ports, which must be free."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from overcast.testing.micro import clean_environment

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORTS = (9022, 8080, 8082)
START_SECONDS = 120.0
PUSH_SECONDS = 180.0


def readme_block(name: str) -> str:
    """The ```sh block right after `<!-- quickstart:NAME -->` in README.md."""
    text = (ROOT / "README.md").read_text()
    match = re.search(
        rf"<!-- quickstart:{re.escape(name)} -->\s*```sh\n(.*?)```", text, flags=re.DOTALL
    )
    assert match, f"README.md has no quickstart:{name} block"
    return match.group(1)


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.stdout is not None
    return process.stdout.read()


def test_the_readme_quickstart_as_written(tmp_path: Path) -> None:
    taken = [port for port in DEFAULT_PORTS if _port_taken(port)]
    if taken:
        pytest.fail(f"the quickstart needs the default ports; in use: {taken}")
    up_block, push_block = readme_block("up"), readme_block("push")
    env = clean_environment(HOME=str(tmp_path))
    data = tmp_path / ".overcast" / "data"
    cloud = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", up_block],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not ((data / "api-url").exists() and (data / "router-url").exists()):
            assert cloud.poll() is None, f"`{up_block.strip()}` exited:\n{_stop(cloud)}"
            assert time.monotonic() < deadline, f"the micro cloud did not start:\n{_stop(cloud)}"
            time.sleep(0.2)
        pushed = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", push_block],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=PUSH_SECONDS,
            check=False,
        )
        output = pushed.stdout + pushed.stderr
        assert pushed.returncode == 0, output
        assert "routes:           hello.apps.localhost" in output, output
        # The last command, curl through the router, printed the app's answer.
        assert pushed.stdout.strip().splitlines()[-1].startswith('{"app": "stdlib"'), output
    finally:
        log = _stop(cloud)
    assert cloud.returncode == 0, f"the micro cloud exited with {cloud.returncode}:\n{log}"

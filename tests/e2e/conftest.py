"""End-to-end fixtures: a real micro cloud (`overcast up`) in a subprocess, and the real CLI
run as a subprocess against it with its own home directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
CLI_TIMEOUT_SECONDS = 60.0


def clean_environment(**extra: str) -> dict[str, str]:
    """The test process's environment without any OVERCAST_* setting of the developer's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OVERCAST_")}
    env.update(extra)
    return env


@dataclass(frozen=True)
class MicroCloud:
    api_url: str
    admin_password: str
    data_dir: Path
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _wait_for_api_url(process: subprocess.Popen[bytes], data_dir: Path, log_path: Path) -> str:
    url_file = data_dir / "api-url"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"overcast up exited with {process.returncode}:\n{log_path.read_text()}")
        if url_file.exists():
            text = url_file.read_text()
            if text.endswith("\n"):  # written completely
                return text.strip()
        time.sleep(0.05)
    pytest.fail(
        f"overcast up wrote no api-url in {START_TIMEOUT_SECONDS}s:\n{log_path.read_text()}"
    )


def _stop(process: subprocess.Popen[bytes], log_path: Path) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"overcast up did not stop within {STOP_TIMEOUT_SECONDS}s of SIGTERM")
    assert code == 0, f"overcast up exited with {code}:\n{log_path.read_text()}"


@pytest.fixture(scope="session")
def micro_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MicroCloud]:
    data_dir = tmp_path_factory.mktemp("micro-cloud")
    log_path = tmp_path_factory.mktemp("micro-cloud-log") / "up.log"
    command = [
        sys.executable,
        "-m",
        "overcast",
        "up",
        "--data-dir",
        str(data_dir),
        "--api-port",
        "0",
        "--router-port",
        "0",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_environment(),
        )
    try:
        api_url = _wait_for_api_url(process, data_dir, log_path)
        password = (data_dir / "admin-password").read_text().strip()
    except BaseException:
        process.kill()
        process.wait()
        raise
    yield MicroCloud(api_url=api_url, admin_password=password, data_dir=data_dir, log_path=log_path)
    _stop(process, log_path)


class CliResult(NamedTuple):
    code: int
    stdout: str
    stderr: str


def run_cli(home: Path, *args: str, input: str | None = None) -> CliResult:
    """`overcast ARGS` in a subprocess whose OVERCAST_HOME is `home`; stdin is `input` (or
    empty, so a prompt reads end-of-file instead of hanging)."""
    completed = subprocess.run(
        [sys.executable, "-m", "overcast", *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env=clean_environment(OVERCAST_HOME=str(home), COLUMNS="200"),
        timeout=CLI_TIMEOUT_SECONDS,
        start_new_session=True,  # no controlling terminal: prompts read the piped stdin
        check=False,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


class Cli:
    """One CLI user: a home directory (config file) of their own."""

    def __init__(self, home: Path, cloud: MicroCloud) -> None:
        self.home = home
        self.cloud = cloud

    @property
    def config_path(self) -> Path:
        return self.home / "config.json"

    def run(self, *args: str, input: str | None = None) -> CliResult:
        return run_cli(self.home, *args, input=input)

    def ok(self, *args: str, input: str | None = None) -> str:
        """Runs a command that must succeed; returns its stdout."""
        result = self.run(*args, input=input)
        assert result.code == 0, (
            f"overcast {' '.join(args)} failed ({result.code}):\n{result.stdout}{result.stderr}"
        )
        return result.stdout

    def fails(self, *args: str, input: str | None = None) -> str:
        """Runs a command that must fail cleanly: exit 1, one line on stderr, no traceback."""
        result = self.run(*args, input=input)
        assert result.code == 1, f"expected exit 1, got {result.code}: {result}"
        assert "Traceback" not in result.stderr + result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
        return lines[0]

    def login(self, username: str, password: str) -> str:
        return self.ok("login", "-a", self.cloud.api_url, "-u", username, "-p", password)


@pytest.fixture
def new_cli(micro_cloud: MicroCloud, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A CLI user who has not logged in yet."""
    return Cli(tmp_path_factory.mktemp("cli-home"), micro_cloud)


@pytest.fixture(scope="module")
def admin(micro_cloud: MicroCloud, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A CLI user (with a home of their own) logged in as the micro cloud's admin; shared by
    a module's tests (logging in costs a password hash), which retarget it as they need."""
    cli = Cli(tmp_path_factory.mktemp("admin-home"), micro_cloud)
    cli.login("admin", micro_cloud.admin_password)
    return cli

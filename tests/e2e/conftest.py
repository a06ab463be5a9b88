"""End-to-end fixtures: a real micro cloud (`overcast up`) in a subprocess, and the real CLI
run as a subprocess against it with its own home directory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from overcast.testing.micro import MicroCloud, clean_environment

CLI_TIMEOUT_SECONDS = 60.0


@pytest.fixture(scope="session")
def micro_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MicroCloud]:
    cloud = MicroCloud(tmp_path_factory.mktemp("micro-cloud") / "data")
    cloud.start()
    try:
        yield cloud
    finally:
        code = cloud.stop()
        assert code == 0, f"overcast up exited with {code} on SIGTERM:\n{cloud.log_tail()}"


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

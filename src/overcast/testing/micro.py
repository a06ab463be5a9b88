"""Overcast server processes (`overcast up`, `overcast controller`) as real subprocesses, for
tests and benchmarks that drive them over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_ENTRY = "from overcast.cmd.main import main; main()"


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without a developer's own OVERCAST_* settings (test-only
    switches such as OVERCAST_TEST_REQUIRE_SERVERS stay)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OVERCAST_") or key.startswith("OVERCAST_TEST_")
    }
    env.update(extra)
    return env


class OvercastProcess:
    """`start()` waits until the process has written `<data-dir>/api-url`; the admin password
    is read from `<data-dir>/admin-password` when this process created the admin."""

    def __init__(
        self, command: list[str], data_dir: Path, *, extra_env: dict[str, str] | None = None
    ) -> None:
        self.command = command
        self.data_dir = data_dir
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.api_url = ""
        self.admin_password = ""
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        url_file = self.data_dir / "api-url"
        url_file.unlink(missing_ok=True)
        env = {
            **os.environ,
            "OVERCAST_LOG_FORMAT": "json",
            "OVERCAST_DATA_DIR": str(self.data_dir),
            **self.extra_env,
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, *self.command],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        # The file is complete once its line ends.
        while not (url_file.exists() and url_file.read_text().endswith("\n")):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited early:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.command[0]} did not get ready:\n{self.log_text()}")
            time.sleep(0.05)
        self.api_url = url_file.read_text().strip()
        password_file = self.data_dir / "admin-password"
        if password_file.exists():
            self.admin_password = password_file.read_text().strip()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: the process dies without any clean-up, as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                return None
        return process.returncode


class MicroCloud(OvercastProcess):
    def __init__(self, data_dir: Path, *, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(
            ["up", "--data-dir", str(data_dir), "--api-port", "0", "--router-port", "0"],
            data_dir,
            extra_env=extra_env,
        )

    @property
    def router_url(self) -> str:
        """The micro cloud's router (written to <data_dir>/router-url once it is up)."""
        return (self.data_dir / "router-url").read_text().strip()


class ControllerProcess(OvercastProcess):
    """`overcast controller` configured entirely through OVERCAST_* variables."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        super().__init__(["controller"], data_dir, extra_env={"OVERCAST_API__PORT": "0", **env})

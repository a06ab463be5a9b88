"""Overcast server processes (`overcast up`, `overcast controller`, `overcast router`,
`overcast health`) as real subprocesses, for tests and benchmarks that drive them over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from overcast.testing.ports import next_cell_port_range

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
        # Where this run's output starts in the log (earlier runs append to the same file).
        self._log_start = 0

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        url_file = self.data_dir / "api-url"
        url_file.unlink(missing_ok=True)
        self._spawn()
        # The file is complete once its line ends.
        self._wait_until(lambda: url_file.exists() and url_file.read_text().endswith("\n"), timeout)
        self.api_url = url_file.read_text().strip()
        password_file = self.data_dir / "admin-password"
        if password_file.exists():
            self.admin_password = password_file.read_text().strip()

    def _spawn(self) -> None:
        env = {
            **os.environ,
            "OVERCAST_LOG_FORMAT": "json",
            "OVERCAST_DATA_DIR": str(self.data_dir),
            **self.extra_env,
        }
        with open(self.log_path, "ab") as log:
            self._log_start = log.tell()
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, *self.command],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def _wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        """Poll `ready` until it holds; stops the process and raises if it exits or the time
        runs out first."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited early:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.command[0]} did not get ready:\n{self.log_text()}")
            time.sleep(0.05)

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
        # Its cell takes a test block of ports, not the default range every micro cloud
        # starts from: two alive at once must not hand out the same port.
        first, last = next_cell_port_range()
        ports = {
            "OVERCAST_CELL__PORT_RANGE_START": str(first),
            "OVERCAST_CELL__PORT_RANGE_END": str(last),
        }
        super().__init__(
            ["up", "--data-dir", str(data_dir), "--api-port", "0", "--router-port", "0"],
            data_dir,
            extra_env={**ports, **(extra_env or {})},
        )

    @property
    def router_url(self) -> str:
        """The micro cloud's router (written to <data_dir>/router-url once it is up)."""
        return (self.data_dir / "router-url").read_text().strip()


class ControllerProcess(OvercastProcess):
    """`overcast controller` configured entirely through OVERCAST_* variables."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        super().__init__(["controller"], data_dir, extra_env={"OVERCAST_API__PORT": "0", **env})


def section_env(section: str, values: Mapping[str, Any]) -> dict[str, str]:
    """Settings of one section as OVERCAST_* variables: ("health", {"sweep_seconds": 0.3}) ->
    {"OVERCAST_HEALTH__SWEEP_SECONDS": "0.3"}."""
    return {
        f"OVERCAST_{section.upper()}__{key.upper()}": str(value) for key, value in values.items()
    }


class ServiceProcess(OvercastProcess):
    """A process that logs `<listening_event>` with its ports once it listens, and serves
    /health and /metrics on its status port. `start()` waits for that line, then (unless
    `wait_ready` is False) for /health to answer 200. Both ports default to 0 (any free one);
    `ports` holds what the line said, `status_url` where /health and /metrics are."""

    listening_event = ""
    section = ""

    def __init__(self, command: list[str], data_dir: Path, env: dict[str, str]) -> None:
        defaults = {f"OVERCAST_{self.section.upper()}__STATUS_PORT": "0"}
        super().__init__(command, data_dir, extra_env={**defaults, **env})
        self.ports: dict[str, int] = {}

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['status_port']}"

    def start(self, timeout: float = 60.0, *, wait_ready: bool = True) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports = {}
        self._spawn()
        self._wait_until(self._heard_listening, timeout)
        if wait_ready:
            self._wait_until(self.healthy, timeout)

    def _heard_listening(self) -> bool:
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            lines = log.read().decode(errors="replace").splitlines()
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == self.listening_event:
                self.ports = {
                    key: int(value) for key, value in entry.items() if key.endswith("port")
                }
                return True
        return False

    def healthy(self) -> bool:
        """GET /health answers 200."""
        try:
            return httpx.get(f"{self.status_url}/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def metrics_text(self) -> str:
        response = httpx.get(f"{self.status_url}/metrics", timeout=5)
        response.raise_for_status()
        return response.text

    def metric(self, sample: str, **labels: str) -> float | None:
        """A sample of /metrics by its full name (counters end in `_total`), summed over the
        samples that carry `labels` (and any others); None when there is none."""
        values = [
            float(item.value)
            for family in text_string_to_metric_families(self.metrics_text())
            for item in family.samples
            if item.name == sample and labels.items() <= item.labels.items()
        ]
        return sum(values) if values else None

    def metric_by(self, sample: str, label: str) -> dict[str, float]:
        """A sample of /metrics by the values of one of its labels: {"CRASHED": 1.0, ...}."""
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for item in family.samples:
                if item.name == sample and label in item.labels:
                    key = item.labels[label]
                    found[key] = found.get(key, 0.0) + float(item.value)
        return found


class RouterProcess(ServiceProcess):
    """`overcast router` on the bus its env names (OVERCAST_BUS__*), the data plane on any free
    port unless OVERCAST_ROUTER__PORT says; ready once a registration round was heard."""

    listening_event = "router.listening"
    section = "router"

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        super().__init__(["router"], data_dir, {"OVERCAST_ROUTER__PORT": "0", **env})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['port']}"


class HealthProcess(ServiceProcess):
    """`overcast health`: needs OVERCAST_BUS__*, OVERCAST_HEALTH__API_URL, __CLIENT_ID and
    __CLIENT_SECRET; ready once it fetched desired state and heard a heartbeat round."""

    listening_event = "health.listening"
    section = "health"

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        super().__init__(["health"], data_dir, env)

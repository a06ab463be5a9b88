"""`overcast up` as a real subprocess, for tests and benchmarks that drive it over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class MicroCloud:
    """Start with `start()`; `api_url` and `admin_password` are read from its data dir."""

    def __init__(self, data_dir: Path, *, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.api_url = ""
        self.admin_password = ""
        self.log_path = data_dir.parent / f"{data_dir.name}-micro.log"

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        url_file = self.data_dir / "api-url"
        url_file.unlink(missing_ok=True)
        env = {**os.environ, "OVERCAST_LOG_FORMAT": "json", **self.extra_env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from overcast.cmd.main import main; main()",
                    "up",
                    "--data-dir",
                    str(self.data_dir),
                    "--api-port",
                    "0",
                    "--router-port",
                    "0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while not url_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"overcast up exited early:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"overcast up did not get ready:\n{self.log_text()}")
            time.sleep(0.05)
        self.api_url = url_file.read_text().strip()
        self.admin_password = (self.data_dir / "admin-password").read_text().strip()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

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

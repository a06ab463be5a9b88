"""A throwaway PostgreSQL cluster on loopback for tests and benchmarks.

PostgreSQL refuses to run as root, so as root the cluster is created and run as the
`postgres` system user (via runuser) in a temporary directory that is removed afterwards."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from overcast.testing.servers import find_binary, free_port

_BIN_GLOB = "/usr/lib/postgresql/*/bin/"


def postgres_binaries() -> Path | None:
    found = find_binary("pg_ctl", _BIN_GLOB + "pg_ctl")
    if not found:
        return None
    bin_dir = Path(found).resolve().parent
    return bin_dir if (bin_dir / "initdb").exists() else None


class PostgresServer:
    """`start()` creates and starts a cluster; `stop()` stops it and deletes every file."""

    def __init__(self, bin_dir: Path, user: str = "overcast") -> None:
        self.bin_dir = bin_dir
        self.user = user
        self.port = 0
        self.directory: Path | None = None
        self._run_as: list[str] = []

    @property
    def data_dir(self) -> Path:
        assert self.directory is not None
        return self.directory / "data"

    def _prepare_directory(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="overcast-pg-"))
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
            self._run_as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._run_as, *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.directory,
        )

    def start(self) -> None:
        self._prepare_directory()
        assert self.directory is not None
        self.port = free_port()
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if result.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not become ready")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        self._run(
            str(self.bin_dir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            name,
        )
        return self.url(name)

    def stop(self) -> None:
        if self.directory is None:
            return
        if self.data_dir.exists():
            subprocess.run(
                [
                    *self._run_as,
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                check=False,
                capture_output=True,
                cwd=self.directory,
            )
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

"""A throwaway nats-server on loopback for tests: no JetStream, no monitoring, no cluster.

`restart()` brings it back on the same port, so clients can reconnect to it."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import IO

from overcast.testing.servers import find_binary, free_port

HOST = "127.0.0.1"


def nats_binary() -> str | None:
    return find_binary("nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server")


class NatsServer:
    """`start()` launches it and waits until it greets clients; `stop()` ends it."""

    def __init__(self, binary: str, port: int = 0) -> None:
        self.binary = binary
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the NATS server has not been started")
        return f"nats://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        if not self.port:
            self.port = free_port(HOST)
        self._log = tempfile.TemporaryFile(prefix="overcast-nats-")  # noqa: SIM115
        self._process = subprocess.Popen(
            [self.binary, "-a", HOST, "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                output = self._output()
                self._cleanup()
                raise RuntimeError(f"nats-server exited at start:\n{output}")
            if self._greets():
                return
            time.sleep(0.02)
        output = self._output()
        self.stop()
        raise RuntimeError(f"nats-server did not become ready in {timeout:g}s:\n{output}")

    def _greets(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                return sock.recv(4).startswith(b"INFO")
        except OSError:
            return False

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-4000:].decode(errors="replace")

    def stop(self) -> None:
        """Stop the server (the port stays reserved for `start()`/`restart()`)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._cleanup()

    def _cleanup(self) -> None:
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

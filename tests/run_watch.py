"""Keeps a parallel run diagnosable where only its output survives (CI): pytest-xdist reports
failures only at the end, so a run that is later killed for hanging shows nothing. In the
controlling process this plugin prints each failure as it happens and names every test that
has been running for a long time."""

from __future__ import annotations

import sys
import threading
import time

import pytest

LONG_RUNNING_SECONDS = 240.0
CHECK_EVERY_SECONDS = 30.0


class RunWatch:
    def __init__(self) -> None:
        self._started_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="run-watch", daemon=True)
        self._thread.start()

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        with self._lock:
            self._started_at[nodeid] = time.monotonic()

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        with self._lock:
            self._started_at.pop(nodeid, None)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            _say(f"\nFAILED ({report.when}) {report.nodeid}\n{report.longreprtext}\n")

    def pytest_unconfigure(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(CHECK_EVERY_SECONDS):
            now = time.monotonic()
            with self._lock:
                running = sorted(self._started_at.items(), key=lambda item: item[1])
            for nodeid, started_at in running:
                if now - started_at >= LONG_RUNNING_SECONDS:
                    _say(f"\nstill running after {now - started_at:.0f} s: {nodeid}\n")


def _say(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def register(config: pytest.Config) -> None:
    """Only in the controlling process of an xdist run: a serial run reports as it goes."""
    is_worker = hasattr(config, "workerinput")
    parallel = bool(getattr(config.option, "numprocesses", None))
    if parallel and not is_worker:
        config.pluginmanager.register(RunWatch(), "overcast-run-watch")

"""`overcast logs` against a real micro cloud: the recent lines, and a live stream that a
Ctrl-C (SIGINT) ends with exit status 0."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from queue import Empty, Queue

from overcast.testing.micro import clean_environment
from tests.e2e.conftest import Cli

WAIT_SECONDS = 30.0
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d\d[+-]\d{4} \[API\] OUT (.*)$")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _target_new_app(admin: Cli) -> str:
    org, space, app = unique("logs-org"), unique("dev"), unique("app")
    admin.ok("create-org", org)
    admin.ok("target", "-o", org)
    admin.ok("create-space", space)
    admin.ok("target", "-o", org, "-s", space)
    admin.ok("create-app", app)
    return app


def test_logs_recent_and_live(admin: Cli) -> None:
    app = _target_new_app(admin)
    admin.ok("scale", app, "-i", "2")
    recent = admin.ok("logs", app, "--recent")
    assert f"Retrieving logs for app {app}" in recent
    api_lines = [m.group(1) for m in map(LINE.match, recent.splitlines()) if m]
    assert len(api_lines) == 1 and api_lines[0].startswith('Updated process "web" of app')
    assert api_lines[0].endswith('({"instances": 2})')

    follower = subprocess.Popen(
        [sys.executable, "-m", "overcast", "logs", app],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_environment(OVERCAST_HOME=str(admin.home), COLUMNS="200"),
    )
    lines: Queue[str] = Queue()
    output = follower.stdout
    assert output is not None

    def read() -> None:
        for line in output:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:

        def next_line() -> str:
            return lines.get(timeout=WAIT_SECONDS).rstrip("\n")

        assert next_line().startswith(f"Retrieving logs for app {app}")
        time.sleep(1.0)  # the stream is open once the server answered; give it a moment
        admin.ok("scale", app, "-i", "3")
        while True:
            match = LINE.match(next_line())
            if match:
                assert match.group(1).endswith('({"instances": 3})')
                break
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=WAIT_SECONDS) == 0
        assert follower.stderr is not None
        assert "Traceback" not in follower.stderr.read()
    except Empty:
        raise AssertionError("overcast logs printed nothing in time") from None
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()

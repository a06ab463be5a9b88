"""`overcast stage` against a real micro cloud: an example's source is uploaded, staged on the
micro cloud's cell (its `STG` output printed as it comes) and becomes the app's droplet, which
`overcast start` runs and which answers HTTP; staging it again uploads no file."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

from tests.e2e.conftest import Cli
from tests.e2e.test_cli import make_space, unique, value_of

STDLIB = Path(__file__).resolve().parents[2] / "examples" / "stdlib"
WAIT_SECONDS = 60.0
FILES_LINE = re.compile(r"^(\d+) files? unchanged, (\d+) uploaded \((.+)\)$", re.MULTILINE)
STAGED_LINE = re.compile(r"^Staged app (\S+): droplet (\S+) is now current \(buildpack (.+?);")


def _files_line(output: str) -> tuple[int, int, str]:
    match = FILES_LINE.search(output)
    assert match, f"no files line in:\n{output}"
    return int(match.group(1)), int(match.group(2)), match.group(3)


def _staged(output: str, app: str) -> tuple[str, str]:
    """(droplet guid, buildpack) of the summary, the last line."""
    match = STAGED_LINE.match(output.strip().splitlines()[-1])
    assert match and match.group(1) == app, f"no summary line in:\n{output}"
    return match.group(2), match.group(3)


def _running_address(admin: Cli, app: str) -> str:
    """host:port of the app's first instance once it runs (from `overcast app`)."""
    deadline = time.monotonic() + WAIT_SECONDS
    shown = ""
    while time.monotonic() < deadline:
        shown = admin.ok("app", app)
        rows = [line.split() for line in shown.splitlines()]
        running = [row for row in rows if row[:2] == ["#0", "running"]]
        if running:
            return next(cell for cell in running[0] if cell.count(":") == 1 and "." in cell)
        time.sleep(0.5)
    raise AssertionError(f"app {app} is not running after {WAIT_SECONDS:g}s:\n{shown}")


def test_stage_start_and_stage_again(admin: Cli) -> None:
    make_space(admin)
    app = unique("stdlib")
    admin.ok("create-app", app)

    rows = [line.split() for line in admin.ok("buildpacks").splitlines()]
    assert rows[0] == ["position", "name", "stack", "enabled", "locked"]
    assert "python" in [row[1] for row in rows[1:] if len(row) == 5]

    first = admin.ok("stage", app, str(STDLIB))
    assert f"Staging app {app} from {STDLIB}" in first
    unchanged, uploaded, _ = _files_line(first)
    # README.md, app.py and requirements.txt (another test may have pushed them already).
    assert unchanged + uploaded == 3
    droplet, buildpack = _staged(first, app)
    assert buildpack.startswith("python")
    # The buildpack's output came through as the build ran.
    assert "   Downloading app package..." in first.splitlines(), first
    assert value_of(admin.ok("app", app), "droplet") == f"{droplet} (STAGED)"

    admin.ok("start", app)
    address = _running_address(admin, app)
    with urllib.request.urlopen(f"http://{address}/", timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read())["app"] == "stdlib"

    again = admin.ok("stage", app, str(STDLIB))
    assert _files_line(again) == (3, 0, "0 B")
    second, _ = _staged(again, app)
    assert second != droplet
    assert "0 B uploaded" in again.strip().splitlines()[-1]

    refused = admin.fails("stage", app, str(STDLIB), "-b", "no-such-buildpack")
    assert "must be an existing admin buildpack" in refused

    admin.ok("delete", app, "-f")

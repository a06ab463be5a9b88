"""Finding server binaries, and the rule for when one is missing: a skip on a developer's
machine, a failure in CI (`OVERCAST_TEST_REQUIRE_SERVERS=1`, set by .ci/run)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
from typing import NoReturn

REQUIRE_SERVERS_VARIABLE = "OVERCAST_TEST_REQUIRE_SERVERS"


def servers_required() -> bool:
    return os.environ.get(REQUIRE_SERVERS_VARIABLE, "") not in ("", "0", "false", "no")


def missing_server(what: str) -> NoReturn:
    import pytest

    message = f"{what} is not installed (run .ci/run or scripts/install-system-packages)"
    if servers_required():
        pytest.fail(f"{message}; {REQUIRE_SERVERS_VARIABLE} is set, so this is a failure")
    pytest.skip(message)


def find_binary(name: str, *patterns: str) -> str | None:
    """A binary on PATH, else the newest match of the glob patterns (e.g. versioned dirs)."""
    found = shutil.which(name)
    if found:
        return found
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if matches:
            return matches[-1]
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port

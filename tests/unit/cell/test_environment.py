"""An instance's environment: CF's variables, nothing of the cell's."""

from __future__ import annotations

import os

import pytest

from overcast.cell.environment import BASE_PATH, build_environment
from tests.unit.cell.test_decisions import spec


def test_cf_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERCAST_SECRET_TOKEN", "hunter2")
    environment = build_environment(
        spec(index=2, environment={"VCAP_SERVICES": "{}", "GREETING": "hi"}),
        host="10.0.0.5",
        port=61001,
        home="/w/i-1/app",
        tmpdir="/w/i-1/tmp",
    )
    assert environment == {
        "PATH": BASE_PATH,
        "HOME": "/w/i-1/app",
        "TMPDIR": "/w/i-1/tmp",
        "LANG": "C.UTF-8",
        "MEMORY_LIMIT": "256m",
        "VCAP_SERVICES": "{}",
        "GREETING": "hi",
        "PORT": "61001",
        "CF_INSTANCE_INDEX": "2",
        "CF_INSTANCE_GUID": "i-1",
        "CF_INSTANCE_IP": "10.0.0.5",
        "CF_INSTANCE_INTERNAL_IP": "10.0.0.5",
        "CF_INSTANCE_PORT": "61001",
        "CF_INSTANCE_ADDR": "10.0.0.5:61001",
        "INSTANCE_INDEX": "2",
        "INSTANCE_GUID": "i-1",
        "VCAP_APP_PORT": "61001",
        "VCAP_APP_HOST": "0.0.0.0",
    }
    assert not set(environment) & (set(os.environ) - set(environment))
    assert "hunter2" not in environment.values()


def test_app_variables_cannot_move_the_port_but_may_set_path() -> None:
    environment = build_environment(
        spec(environment={"PORT": "1", "CF_INSTANCE_GUID": "x", "PATH": "/opt/bin"}),
        host="127.0.0.1",
        port=61000,
        home="/h",
        tmpdir="/t",
    )
    assert environment["PORT"] == "61000"
    assert environment["CF_INSTANCE_GUID"] == "i-1"
    assert environment["PATH"] == "/opt/bin"

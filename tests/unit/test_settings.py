"""Settings precedence: overrides > OVERCAST_* environment > YAML file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from overcast.core.settings import (
    DEFAULT_API_PORT,
    CellSettings,
    ControllerSettings,
    MicroCloudSettings,
    load_settings,
)
from overcast.models.errors import Unprocessable


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("OVERCAST_") and name != "OVERCAST_TEST_REQUIRE_SERVERS":
            monkeypatch.delenv(name)


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(ControllerSettings)
    assert settings.api.port == DEFAULT_API_PORT and settings.bus.kind == "memory"
    assert settings.database_url().startswith("sqlite:///")
    assert settings.database_url().endswith("overcast.db")


def test_file_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "overcast.yml"
    config.write_text(
        "api:\n  port: 1111\n  host: 0.0.0.0\napps_domain: from.file\n"
        "jobs:\n  queues: {default: 9}\n"
    )
    from_file = load_settings(ControllerSettings, config_file=config)
    assert (from_file.api.port, from_file.api.host, from_file.apps_domain) == (
        1111,
        "0.0.0.0",
        "from.file",
    )
    assert from_file.jobs.queues == {"default": 9}
    monkeypatch.setenv("OVERCAST_API__PORT", "2222")
    monkeypatch.setenv("OVERCAST_BUS__KIND", "nats")
    from_env = load_settings(ControllerSettings, config_file=config)
    assert (from_env.api.port, from_env.api.host, from_env.bus.kind) == (2222, "0.0.0.0", "nats")
    overridden = load_settings(
        MicroCloudSettings,
        config_file=config,
        api={"port": 0},
        router_port=None,
        data_dir=tmp_path / "d",
    )
    assert overridden.api.port == 0 and overridden.api.host == "0.0.0.0"
    assert overridden.data_dir == tmp_path / "d" and overridden.router_port == 8080


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yml"
    config.write_text("apps_domain: via.env\n")
    monkeypatch.setenv("OVERCAST_CONFIG", str(config))
    assert load_settings(ControllerSettings).apps_domain == "via.env"


def test_bad_settings_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "bad.yml"
    config.write_text("api:\n  prot: 1\n")
    with pytest.raises(ValidationError, match="prot"):
        load_settings(ControllerSettings, config_file=config)
    config.write_text("- a list\n")
    with pytest.raises(Unprocessable, match="mapping"):
        load_settings(ControllerSettings, config_file=config)
    config.write_text("api: [unclosed\n")
    with pytest.raises(Unprocessable, match="YAML"):
        load_settings(ControllerSettings, config_file=config)
    with pytest.raises(Unprocessable, match="Cannot read"):
        load_settings(ControllerSettings, config_file=tmp_path / "missing.yml")
    monkeypatch.setenv("OVERCAST_API__PORT", "70000")
    with pytest.raises(ValidationError):
        load_settings(ControllerSettings)


def test_secrets_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERCAST_STORE__URL", "postgresql://u:hunter2@db/x")
    monkeypatch.setenv("OVERCAST_AUTH__ADMIN_PASSWORD", "sekret-pass")
    settings = load_settings(ControllerSettings)
    assert "hunter2" not in repr(settings) and "sekret-pass" not in repr(settings)
    assert settings.database_url() == "postgresql://u:hunter2@db/x"


def test_the_micro_cloud_keeps_its_own_defaults_when_a_section_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OVERCAST_CELL__PORT_RANGE_START", "30000")
    monkeypatch.setenv("OVERCAST_ROUTER__REGISTER_INTERVAL_SECONDS", "1")
    monkeypatch.setenv("OVERCAST_HEALTH__SWEEP_SECONDS", "0.5")
    settings = load_settings(MicroCloudSettings)
    assert settings.cell.port_range_start == 30000
    assert settings.cell.stop_instances_on_exit  # its instances end with it, as before
    assert settings.router.status_port == 0 and settings.health.status_port == 0
    assert not load_settings(CellSettings).cell.stop_instances_on_exit

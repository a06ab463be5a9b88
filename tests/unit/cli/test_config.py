"""The CLI config file: owner-only, atomic, round-trips, never shows tokens in repr."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from overcast.cli.config import CliConfig, ConfigStore, Named
from overcast.cli.errors import CliError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _full_config() -> CliConfig:
    return CliConfig(
        api_url="http://127.0.0.1:9022",
        username="admin",
        access_token="access-xyz",
        refresh_token="refresh-xyz",
        org=Named("org-guid", "o1"),
        space=Named("space-guid", "dev"),
    )


def test_missing_file_is_an_empty_config(tmp_path: Path) -> None:
    config = ConfigStore(tmp_path / "home").load()
    assert config == CliConfig()
    assert not config.logged_in


def test_save_creates_an_owner_only_file_that_round_trips(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "home")
    store.save(_full_config())
    assert _mode(store.path) == 0o600
    assert _mode(store.home) == 0o700
    assert store.load() == _full_config()
    assert json.loads(store.path.read_text())["target"] == "http://127.0.0.1:9022"
    assert [p.name for p in store.home.iterdir()] == ["config.json"]  # no temp file left


def test_every_save_restores_mode_0600(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    store.save(_full_config())
    store.path.chmod(0o644)
    store.save(_full_config())
    assert _mode(store.path) == 0o600


def test_end_session_keeps_only_the_api_url(tmp_path: Path) -> None:
    config = _full_config()
    config.end_session()
    assert config == CliConfig(api_url="http://127.0.0.1:9022")


def test_repr_never_shows_tokens() -> None:
    text = repr(_full_config())
    assert "access-xyz" not in text
    assert "refresh-xyz" not in text


@pytest.mark.parametrize(
    "content", ["{not json", "[]", '{"target": 3}', '{"organization": {"guid": "g"}}']
)
def test_a_damaged_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    store = ConfigStore(tmp_path)
    store.path.write_text(content)
    with pytest.raises(CliError, match=r"config.json is damaged .*log in again"):
        store.load()

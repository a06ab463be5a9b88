"""`<home>/config.json`: the API target, the session's tokens and the targeted org and space.

It holds credentials, so it is written owner-only (0600, re-applied on every write) and
atomically (a temp file renamed over the old one), so a crash never leaves half a file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overcast.cli.errors import CliError

CONFIG_FILE_NAME = "config.json"
CONFIG_VERSION = 1
FILE_MODE = 0o600
HOME_MODE = 0o700


@dataclass(frozen=True)
class Named:
    """A targeted org or space: the guid for API calls, the name for people."""

    guid: str
    name: str

    def to_json(self) -> dict[str, str]:
        return {"guid": self.guid, "name": self.name}


@dataclass
class CliConfig:
    api_url: str | None = None
    username: str | None = None
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    org: Named | None = None
    space: Named | None = None

    @property
    def logged_in(self) -> bool:
        return bool(self.api_url and self.access_token)

    def end_session(self) -> None:
        """Forget who is logged in and what they targeted; keep the API URL."""
        self.username = self.access_token = self.refresh_token = None
        self.org = self.space = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CONFIG_VERSION,
            "target": self.api_url,
            "username": self.username,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "organization": self.org.to_json() if self.org else None,
            "space": self.space.to_json() if self.space else None,
        }

    @classmethod
    def from_json(cls, data: Any) -> CliConfig:
        if not isinstance(data, dict):
            raise ValueError("the top level must be an object")
        return cls(
            api_url=_text(data, "target"),
            username=_text(data, "username"),
            access_token=_text(data, "access_token"),
            refresh_token=_text(data, "refresh_token"),
            org=_named(data.get("organization")),
            space=_named(data.get("space")),
        )


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"'{key}' must be a string")
    return value


def _named(value: Any) -> Named | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("a target must be an object with guid and name")
    guid, name = value.get("guid"), value.get("name")
    if not isinstance(guid, str) or not isinstance(name, str):
        raise ValueError("a target must be an object with guid and name")
    return Named(guid=guid, name=name)


class ConfigStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / CONFIG_FILE_NAME

    def load(self) -> CliConfig:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return CliConfig()
        except OSError as error:
            raise CliError(f"Cannot read {self.path}: {error.strerror}") from None
        try:
            return CliConfig.from_json(json.loads(text))
        except ValueError as error:
            raise CliError(
                f"{self.path} is damaged ({error}); delete it and log in again"
            ) from None

    def save(self, config: CliConfig) -> None:
        text = json.dumps(config.to_json(), indent=2) + "\n"
        try:
            self.home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
            self._replace(text)
        except OSError as error:
            raise CliError(f"Cannot write {self.path}: {error.strerror}") from None

    def _replace(self, text: str) -> None:
        # mkstemp creates the file 0600, so the tokens are never readable by others.
        handle, temp_name = tempfile.mkstemp(dir=self.home, prefix=".config-", suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as temp_file:
                temp_file.write(text)
                temp_file.flush()
                os.fsync(temp_file.fileno())
            os.chmod(temp_name, FILE_MODE)
            os.replace(temp_name, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
        os.chmod(self.path, FILE_MODE)

"""Masking of secrets for logs, events and errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

HIDDEN = "[PRIVATE DATA HIDDEN]"

_SECRET_NAME = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|credential|auth(orization)?|api[_-]?key|"
    r"private[_-]?key|cookie|session|signature|salt|dsn|database_url|redis_url)",
    re.IGNORECASE,
)
# `scheme://user:password@host`: the password part of any URL-looking string.
_URL_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^@\s]+)@", re.IGNORECASE
)

# Keys whose whole value is user-supplied environment: every value is masked, whatever its name.
_ENVIRONMENT_KEYS = frozenset({"environment_variables", "var", "env", "environment_json"})


def looks_secret(name: str) -> bool:
    """True when a variable or field name suggests its value is a secret."""
    return bool(_SECRET_NAME.search(name))


def mask_environment(env: Mapping[str, Any]) -> dict[str, str]:
    """Every value hidden, names kept: what audit events and logs show of an app's env."""
    return dict.fromkeys(env, HIDDEN)


def mask_url_passwords(text: str) -> str:
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{HIDDEN}@", text)


def mask_query(target: str) -> str:
    """A request target with the values of secret-looking query parameters hidden
    (`/cb?code=1&access_token=abc` -> `/cb?code=1&access_token=[PRIVATE DATA HIDDEN]`)."""
    path, question, query = target.partition("?")
    if not question:
        return target
    parts = []
    for pair in query.split("&"):
        name, equals, _ = pair.partition("=")
        parts.append(f"{name}={HIDDEN}" if equals and looks_secret(name) else pair)
    return f"{path}?{'&'.join(parts)}"


def mask(value: Any) -> Any:
    """Recursively hide values under secret-looking keys and whole environment maps."""
    if isinstance(value, Mapping):
        masked: dict[str, Any] = {}
        for key, item in value.items():
            key_text = str(key)
            if key_text in _ENVIRONMENT_KEYS and isinstance(item, Mapping):
                masked[key_text] = mask_environment(item)
            elif looks_secret(key_text) and item is not None and not isinstance(item, bool):
                masked[key_text] = HIDDEN
            else:
                masked[key_text] = mask(item)
        return masked
    if isinstance(value, list | tuple):
        return [mask(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return mask_url_passwords(value)
    return value

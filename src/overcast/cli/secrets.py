"""Which environment values to hide on screen. Decided by the variable's NAME (plus URLs that
embed a password), so a secret is hidden even when its value looks harmless."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

HIDDEN = "[hidden]"

# Anywhere in the name, ignoring case and separators: DB_PASSWORD, apiKey, AWS_SECRET_KEY.
_SECRET_FRAGMENTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "apikey",
    "accesskey",
    "privatekey",
    "signingkey",
    "encryptionkey",
    "databaseurl",
    "connectionstring",
    "cookie",
)
# Whole words only, so that MONKEY, KEYBOARD_LAYOUT or AUTHOR_NAME stay visible.
_SECRET_WORDS = frozenset(
    {
        "key",
        "keys",
        "auth",
        "authorization",
        "authentication",
        "dsn",
        "pwd",
        "pass",
        "jwt",
        "salt",
        "pem",
    }
)
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def _words(name: str) -> list[str]:
    """`AWS_SECRET_ACCESS_KEY` -> aws, secret, access, key; `apiKey` -> api, key."""
    return [word.lower() for word in _WORD.findall(name)]


def is_secret_name(name: str) -> bool:
    words = _words(name)
    squashed = "".join(words)
    if any(fragment in squashed for fragment in _SECRET_FRAGMENTS):
        return True
    return any(word in _SECRET_WORDS for word in words)


def has_embedded_password(value: object) -> bool:
    """`postgres://user:pw@host/db` carries a password whatever the variable is called."""
    if not isinstance(value, str) or "://" not in value:
        return False
    try:
        return bool(urlsplit(value.strip()).password)
    except ValueError:
        return False


def mask_value(name: str, value: Any, *, reveal: bool = False) -> Any:
    if reveal:
        return value
    if is_secret_name(name) or has_embedded_password(value):
        return HIDDEN
    return mask_tree(value)


def mask_tree(value: Any, *, reveal: bool = False) -> Any:
    """A JSON value with every secret-named member (at any depth) replaced by [hidden]."""
    if reveal:
        return value
    if isinstance(value, Mapping):
        return {key: mask_value(str(key), item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_tree(item) for item in value]
    if has_embedded_password(value):
        return HIDDEN
    return value


def count_hidden(original: Any, masked: Any) -> int:
    """How many values mask_tree replaced (to tell the user that --reveal exists)."""
    if masked == HIDDEN and original != HIDDEN:
        return 1
    if isinstance(original, Mapping) and isinstance(masked, Mapping):
        return sum(count_hidden(original[key], masked[key]) for key in original)
    if isinstance(original, list) and isinstance(masked, list):
        return sum(count_hidden(a, b) for a, b in zip(original, masked, strict=True))
    return 0

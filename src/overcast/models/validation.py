"""Pure validators shared by every use case: names, labels, memory sizes."""

from __future__ import annotations

import re
from collections.abc import Mapping

from overcast.models.errors import Unprocessable

MAX_NAME_LENGTH = 255

_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_DNS_PREFIX = re.compile(
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")
_SIZE = re.compile(r"^\s*(\d+)\s*(B|K|KB|M|MB|G|GB|T|TB)\s*$", re.IGNORECASE)
_MB_PER_UNIT = {"B": 1 / (1024 * 1024), "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def check_name(name: str, *, what: str) -> str:
    if not name or not name.strip():
        raise Unprocessable(f"{what} name can't be blank")
    if len(name) > MAX_NAME_LENGTH:
        raise Unprocessable(f"{what} name is too long (maximum is {MAX_NAME_LENGTH} characters)")
    if any(ord(ch) < 32 for ch in name):
        raise Unprocessable(f"{what} name must not contain control characters")
    return name


def _check_key(key: str, *, what: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_PREFIX.match(prefix)):
        raise Unprocessable(f"{what} key has an invalid prefix: {key!r}")
    if not _LABEL_NAME.match(name):
        raise Unprocessable(
            f"{what} key {key!r} must be 1-63 alphanumeric characters, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )


def check_labels(labels: Mapping[str, str | None]) -> None:
    for key, value in labels.items():
        _check_key(key, what="Metadata label")
        if value is not None and not _LABEL_VALUE.match(value):
            raise Unprocessable(f"Metadata label value for {key!r} is invalid: {value!r}")


def check_annotations(annotations: Mapping[str, str | None]) -> None:
    for key, value in annotations.items():
        _check_key(key, what="Metadata annotation")
        if value is not None and len(value) > 5000:
            raise Unprocessable(f"Metadata annotation value for {key!r} is longer than 5000")


def megabytes(text: str) -> int:
    """'512M', '1G', '1024MB' -> megabytes; refuses plain numbers and unknown units."""
    match = _SIZE.match(text)
    if not match:
        raise Unprocessable(
            f"Invalid size {text!r}: use a whole number with a unit (B, K, M, G, T), e.g. 512M"
        )
    amount, unit = int(match.group(1)), match.group(2).upper().rstrip("B") or "B"
    megs = amount * _MB_PER_UNIT[unit]
    if megs < 1:
        raise Unprocessable(f"Invalid size {text!r}: must be at least 1M")
    return int(megs)


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ENV_VALUE_BYTES = 130 * 1024


def check_environment_variables(variables: Mapping[str, object]) -> None:
    for name, value in variables.items():
        if not ENV_NAME.match(name):
            raise Unprocessable(f"Environment variable name {name!r} is invalid")
        if name.upper().startswith("VCAP_"):
            raise Unprocessable("Environment variable names cannot start with VCAP_")
        if name.upper() == "PORT":
            raise Unprocessable("PORT is a reserved environment variable name")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise Unprocessable(f"Environment variable {name} must be a string, number or boolean")
        if len(env_value_text(value).encode()) > MAX_ENV_VALUE_BYTES:
            raise Unprocessable(f"Environment variable {name} is longer than 130 KB")


def env_value_text(value: object) -> str:
    """Environment values are strings in a process; numbers and booleans read as JSON does."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

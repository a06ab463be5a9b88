"""The small text formats of buildpack staging: Procfiles and `bin/release` output.

A Procfile holds `type: command` lines (Heroku's format; `#` comments and blank lines are
skipped). Cloud Foundry reads it as YAML, so a command wholly in YAML quotes is unquoted.
`bin/release` prints YAML whose `default_process_types` maps process types to commands."""

from __future__ import annotations

import re

import yaml

_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:\s*(.*?)\s*$")


class FormatError(ValueError):
    """A Procfile or release output that cannot be read."""


def _unquote(command: str) -> str:
    if len(command) >= 2 and command[0] == command[-1] and command[0] in "\"'":
        try:
            value = yaml.safe_load(command)
        except yaml.YAMLError:
            return command
        if isinstance(value, str):
            return value
    return command


def parse_procfile(text: str) -> dict[str, str]:
    """Process types of a Procfile, in file order; a later line for a type wins. Lines that
    are not `type: command` raise FormatError naming the line."""
    types: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise FormatError(f"Procfile line {number} is not 'type: command': {stripped[:80]!r}")
        command = _unquote(match.group(2))
        if not command:
            raise FormatError(f"Procfile line {number} has no command for {match.group(1)!r}")
        types[match.group(1)] = command
    return types


def parse_release(text: str) -> dict[str, str]:
    """`default_process_types` of a buildpack's `bin/release` output (empty when absent)."""
    try:
        document = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as error:
        raise FormatError(f"bin/release printed invalid YAML: {error}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise FormatError("bin/release must print a YAML mapping")
    types = document.get("default_process_types")
    if types is None:
        return {}
    if not isinstance(types, dict):
        raise FormatError("default_process_types in bin/release output must be a mapping")
    result: dict[str, str] = {}
    for name, command in types.items():
        if not isinstance(name, str) or not isinstance(command, str | int | float):
            raise FormatError(f"default_process_types has an invalid entry for {name!r}")
        result[name] = str(command)
    return result

"""Cloud Foundry application manifests (the manifest.yml of `cf push`): parse, check,
interpolate ((variables)), apply push flags and render, as pure functions over text and mappings.

The CLI's push and the API's apply_manifest and app manifest endpoints share this module, so a
manifest means the same on both sides. Parsing walks PyYAML's node tree instead of loaded data:
that keeps the line of every key for error messages, and lets aliases be refused outright."""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import SafeConstructor
from yaml.reader import ReaderError

from overcast.models.errors import Unprocessable
from overcast.models.resources import HealthCheckType
from overcast.models.validation import (
    check_annotations,
    check_environment_variables,
    check_labels,
    check_name,
)

MAX_MANIFEST_BYTES = 1024 * 1024
# Service parameters may nest; nothing sane nests this deep, and the composer recurses per level.
MAX_DEPTH = 64
MANIFEST_VERSION = 1
UNLIMITED_LOG_RATE = -1

# --- problems -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestProblem:
    """One thing wrong with a manifest: where (1-based line, dotted path) and what."""

    line: int | None
    path: str
    message: str

    def describe(self, source: str | None) -> str:
        place = source or ""
        if self.line is not None:
            place = f"{place} line {self.line}".strip()
        if self.path:
            place = f"{place}, {self.path}" if place else self.path
        return f"{place}: {self.message}" if place else self.message


class ManifestError(Unprocessable, ValueError):
    """Every problem found in a manifest (or in push flags), so a user fixes them all at once.
    An Unprocessable too, so the API answers it as CF does: 422 CF-UnprocessableEntity."""

    def __init__(
        self, problems: Sequence[ManifestProblem], *, source: str | None = "manifest.yml"
    ) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(problem.describe(source) for problem in self.problems))


class _Report:
    def __init__(self) -> None:
        self.problems: list[ManifestProblem] = []

    def add(self, line: int | None, path: str, message: str) -> None:
        self.problems.append(ManifestProblem(line, path, message))

    def raise_if_any(self, source: str | None) -> None:
        if self.problems:
            # Document order reads best; the sort is stable, so a line's problems keep theirs.
            ordered = sorted(self.problems, key=lambda problem: problem.line or 0)
            raise ManifestError(ordered, source=source)


def _fail(path: str, message: str, *, source: str | None, line: int | None = None) -> ManifestError:
    return ManifestError([ManifestProblem(line, path, message)], source=source)


# --- results ------------------------------------------------------------------------------------
# Every optional field is None when the manifest does not give it: "not given" leaves the current
# value alone when the manifest is applied, which a default could not say. Lines are not part of
# equality, so a manifest equals its rendered and re-parsed self.


@dataclass(frozen=True)
class RouteEntry:
    route: str
    protocol: str | None = None
    loadbalancing: str | None = None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    parameters: dict[str, Any] | None = None
    binding_name: str | None = None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ProcessManifest:
    type: str
    instances: int | None = None
    memory_in_mb: int | None = None
    disk_in_mb: int | None = None
    log_rate_limit_in_bytes_per_second: int | None = None
    command: str | None = None
    health_check_type: HealthCheckType | None = None
    health_check_http_endpoint: str | None = None
    health_check_invocation_timeout: int | None = None
    timeout: int | None = None
    line: int = field(default=0, compare=False)


# The settings an app gives its web process, and a `processes` entry gives its own process.
_PROCESS_FIELDS = (
    "instances",
    "memory_in_mb",
    "disk_in_mb",
    "log_rate_limit_in_bytes_per_second",
    "command",
    "health_check_type",
    "health_check_http_endpoint",
    "health_check_invocation_timeout",
    "timeout",
)


@dataclass(frozen=True)
class ManifestMetadata:
    # A null value removes the label or annotation, as in a CF metadata patch.
    labels: dict[str, str | None] | None = None
    annotations: dict[str, str | None] | None = None


@dataclass(frozen=True)
class AppManifest:
    name: str
    path: str | None = None
    instances: int | None = None
    memory_in_mb: int | None = None
    disk_in_mb: int | None = None
    log_rate_limit_in_bytes_per_second: int | None = None
    buildpacks: tuple[str, ...] | None = None
    stack: str | None = None
    command: str | None = None
    health_check_type: HealthCheckType | None = None
    health_check_http_endpoint: str | None = None
    health_check_invocation_timeout: int | None = None
    timeout: int | None = None
    env: dict[str, str] | None = None
    routes: tuple[RouteEntry, ...] | None = None
    no_route: bool | None = None
    random_route: bool | None = None
    default_route: bool | None = None
    services: tuple[ServiceEntry, ...] | None = None
    metadata: ManifestMetadata | None = None
    processes: tuple[ProcessManifest, ...] | None = None
    # The line of the app's `name` (0 for an app made from flags alone).
    line: int = field(default=0, compare=False)

    def web_process(self) -> ProcessManifest:
        """The web process as CF builds it: the app-level settings, overridden field by field
        by a `processes` entry of type web."""
        settings = {name: getattr(self, name) for name in _PROCESS_FIELDS}
        web = self.process("web")
        if web is not None:
            given = {name: getattr(web, name) for name in _PROCESS_FIELDS}
            settings.update({name: value for name, value in given.items() if value is not None})
        return ProcessManifest(type="web", line=web.line if web else self.line, **settings)

    def process(self, process_type: str) -> ProcessManifest | None:
        return next((p for p in self.processes or () if p.type == process_type), None)


@dataclass(frozen=True)
class Manifest:
    applications: tuple[AppManifest, ...]
    version: int = MANIFEST_VERSION


# --- sizes --------------------------------------------------------------------------------------

_MEMORY = re.compile(r"^\s*(\d{1,12})(M|MB|G|GB|T|TB)\s*$", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"^\s*-?\d+\s*$")
_MB_PER_UNIT = {"M": 1, "G": 1024, "T": 1024 * 1024}
_BYTES = re.compile(r"^\s*(\d{1,15})(B|K|KB|M|MB|G|GB|T|TB)\s*$", re.IGNORECASE)
_BYTES_PER_UNIT = {"T": 1024**4, "G": 1024**3, "M": 1024**2, "K": 1024, "B": 1}


def memory_in_mb(text: str, *, what: str = "memory") -> int:
    """'256M', '1G', '2gb' -> megabytes. CF insists on a unit, so a bare number is refused;
    ValueError says why, naming the value as `what`."""
    if _BARE_NUMBER.match(text):
        raise ValueError(f"{what} must be a number with a unit like 256M or 1G, not {text.strip()}")
    match = _MEMORY.match(text)
    if not match:
        raise ValueError(
            f"invalid {what} {_quoted(text)}; use a number with a unit like 256M or 1G"
        )
    megabytes = int(match[1]) * _MB_PER_UNIT[match[2][0].upper()]
    if megabytes < 1:
        raise ValueError(f"{what} must be at least 1M, not {text.strip()}")
    return megabytes


def format_memory(mb: int) -> str:
    return f"{mb // 1024}G" if mb and mb % 1024 == 0 else f"{mb}M"


def log_rate_in_bytes(text: str) -> int:
    """'1K', '16M' -> bytes per second; '-1' is unlimited (-1). ValueError says why not."""
    if text.strip() == str(UNLIMITED_LOG_RATE):
        return UNLIMITED_LOG_RATE
    match = _BYTES.match(text)
    if not match:
        raise ValueError(
            f"invalid log-rate-limit-per-second {_quoted(text)}; use a number with a unit "
            "like 1K or 16M, or -1 for unlimited"
        )
    return int(match[1]) * _BYTES_PER_UNIT[match[2][0].upper()]


def format_log_rate(bytes_per_second: int) -> str | int:
    if bytes_per_second == UNLIMITED_LOG_RATE:
        return UNLIMITED_LOG_RATE
    for unit, size in _BYTES_PER_UNIT.items():
        if bytes_per_second >= size and bytes_per_second % size == 0:
            return f"{bytes_per_second // size}{unit}"
    return f"{bytes_per_second}B"


# --- reading YAML safely ------------------------------------------------------------------------


class _Refused(ComposerError):
    """YAML that reads fine but that a manifest must not hold."""


class _SafeComposer(yaml.SafeLoader):
    """PyYAML's safe loader, used only to compose nodes, refusing aliases and deep nesting: a
    manifest has no use for aliases, and refusing them is the sure defence against expansion
    bombs ("billion laughs")."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # check_event peeks: current_event is the event the node starts with.
        if self.check_event(yaml.AliasEvent):
            raise _Refused(
                None,
                None,
                "aliases (*name) are not allowed in a manifest; write the value out",
                self.current_event.start_mark,
            )
        if self.depth >= MAX_DEPTH:
            raise _Refused(
                None, None, f"nested deeper than {MAX_DEPTH} levels", self.current_event.start_mark
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _compose(text: str, source: str | None) -> yaml.Node | None:
    # Characters first: a text longer in characters is longer in bytes, without encoding it.
    if len(text) > MAX_MANIFEST_BYTES or len(text.encode()) > MAX_MANIFEST_BYTES:
        limit = f"{MAX_MANIFEST_BYTES // (1024 * 1024)} MiB"
        raise _fail("", f"too large: the limit is {limit}", source=source)
    loader: _SafeComposer | None = None
    try:
        # The reader checks the characters as it is made, so making it can fail too.
        loader = _SafeComposer(text)
        return loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        raise _yaml_problem(error, source) from None
    except ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        raise _fail("", f"invalid YAML: {error.reason}", source=source, line=line) from None
    except yaml.YAMLError as error:
        raise _fail("", f"invalid YAML: {error}", source=source) from None
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_problem(error: yaml.MarkedYAMLError, source: str | None) -> ManifestError:
    mark = error.problem_mark or error.context_mark
    message = error.problem or "unreadable YAML"
    if error.context:
        message = f"{message} ({error.context})"
    if not isinstance(error, _Refused):
        message = f"invalid YAML: {message}"
    return _fail("", message, source=source, line=mark.line + 1 if mark else None)


# --- the node tree, interpolated ----------------------------------------------------------------

_Scalar = str | int | float | bool | None
_VARIABLE = re.compile(r"\(\(([-\w./]+)\)\)")
_CONSTRUCTOR = SafeConstructor()
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"


@dataclass(frozen=True)
class _Node:
    """A YAML value with the line it starts on, after ((variables)) are put in."""

    line: int
    value: _Scalar | list[_Node] | dict[str, _Field]
    # A scalar as written: a string field given a number keeps its text (`name: 0123`).
    text: str | None = None
    # Its problem is already told (or it holds a variable nobody gave): checks skip it.
    reported: bool = False


@dataclass(frozen=True)
class _Field:
    line: int  # of the key
    node: _Node


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _yaml_text(value: str | int | float | bool) -> str:
    """A scalar as YAML (and CF's env vars) spell it: booleans are true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _scalar_value(node: yaml.ScalarNode) -> _Scalar:
    # Only the plain types are built; timestamps, binary and custom tags stay the text written.
    if node.tag == _NULL_TAG:
        return None
    if node.tag == _BOOL_TAG:
        return _CONSTRUCTOR.construct_yaml_bool(node)
    if node.tag == _INT_TAG:
        return _CONSTRUCTOR.construct_yaml_int(node)
    if node.tag == _FLOAT_TAG:
        return _CONSTRUCTOR.construct_yaml_float(node)
    return str(node.value)


def _from_python(value: object, line: int) -> _Node:
    """A variable's value, placed where the variable was used."""
    if isinstance(value, Mapping):
        return _Node(line, {str(k): _Field(line, _from_python(v, line)) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return _Node(line, [_from_python(item, line) for item in value])
    if value is None or isinstance(value, str | int | float | bool):
        return _Node(line, value)
    return _Node(line, str(value))


def _to_python(node: _Node) -> Any:
    if isinstance(node.value, dict):
        return {key: _to_python(entry.node) for key, entry in node.value.items()}
    if isinstance(node.value, list):
        return [_to_python(item) for item in node.value]
    return node.value


class _Builder:
    """Turns PyYAML nodes into `_Node`s, putting in ((variables)) as the cf CLI does: a value
    that is exactly ((name)) takes the variable's value and type, a ((name)) inside a longer
    string is replaced by its text. Keys are never interpolated. `variables` None: no
    interpolation at all (vars files)."""

    def __init__(self, variables: Mapping[str, Any] | None, report: _Report) -> None:
        self.variables = variables
        self.report = report
        # Each missing variable with the line and path of its first use.
        self.missing: dict[str, tuple[int, str]] = {}

    def build(self, node: yaml.Node, path: str) -> _Node:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.SequenceNode):
            items = [self.build(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
            return _Node(line, items)
        if isinstance(node, yaml.MappingNode):
            return _Node(line, self._mapping(node, path))
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, line, path)

    def _mapping(self, node: yaml.MappingNode, path: str) -> dict[str, _Field]:
        fields: dict[str, _Field] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.report.add(line, path, "a key must be a string, not a list or mapping")
                continue
            # Keys are read as written: `ON:` in env is the name ON, not the boolean true.
            key = str(key_node.value)
            if key in fields:
                first = fields[key].line
                self.report.add(
                    line, _join(path, key), f'key "{key}" is given twice (lines {first} and {line})'
                )
                continue
            fields[key] = _Field(line, self.build(value_node, _join(path, key)))
        return fields

    def _scalar(self, node: yaml.ScalarNode, line: int, path: str) -> _Node:
        try:
            value = _scalar_value(node)
        except ValueError:  # e.g. an integer longer than Python converts
            self.report.add(line, path, f"unreadable number {_quoted(str(node.value))}")
            return _Node(line, str(node.value), reported=True)
        if self.variables is None or not isinstance(value, str) or "((" not in value:
            return _Node(line, value, text=str(node.value))
        return self._interpolate(value, line, path)

    def _interpolate(self, text: str, line: int, path: str) -> _Node:
        assert self.variables is not None
        variables = self.variables
        whole = _VARIABLE.fullmatch(text)
        if whole:
            if whole[1] not in variables:
                self._missing(whole[1], line, path)
                return _Node(line, text, reported=True)
            return _from_python(variables[whole[1]], line)
        unresolved = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal unresolved
            name = match[1]
            if name not in variables:
                self._missing(name, line, path)
                unresolved = True
                return match[0]
            value = variables[name]
            if value is None or not isinstance(value, str | int | float | bool):
                self.report.add(
                    line,
                    path,
                    f"variable (({name})) holds {_describe(value)}, which cannot be put inside "
                    "a string; use it as the whole value",
                )
                unresolved = True
                return match[0]
            return _yaml_text(value)

        interpolated = _VARIABLE.sub(substitute, text)
        return _Node(line, interpolated, text=interpolated, reported=unresolved)

    def _missing(self, name: str, line: int, path: str) -> None:
        self.missing.setdefault(name, (line, path))

    def report_missing(self) -> None:
        for name, (line, path) in self.missing.items():
            self.report.add(
                line, path, f"variable (({name})) has no value; give it with --var or a vars file"
            )


def _quoted(text: str) -> str:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return json.dumps(shown, ensure_ascii=False)


def _describe(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return _yaml_text(value)
    if isinstance(value, str):
        return _quoted(value)
    return str(value)


def _node_text(node: _Node) -> str | None:
    """A string value; numbers count, as written (CF's YAML reader takes them as strings)."""
    if isinstance(node.value, str):
        return node.value
    if isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.text if node.text is not None else _yaml_text(node.value)
    return None


# --- reading the manifest -----------------------------------------------------------------------

_INTEGER = re.compile(r"^\s*-?\d{1,15}\s*$")
_HEALTH_CHECK_TYPES = {
    "port": HealthCheckType.PORT,
    "process": HealthCheckType.PROCESS,
    "http": HealthCheckType.HTTP,
    # Deprecated in CF, still accepted there: the same as process.
    "none": HealthCheckType.PROCESS,
}
_PROTOCOLS = ("http1", "http2", "tcp")
_LOAD_BALANCING = ("round-robin", "least-connection")

_TOP_KEYS = ("version", "applications")
_PROCESS_KEYS = (
    "type",
    "instances",
    "memory",
    "disk_quota",
    "disk-quota",
    "log-rate-limit-per-second",
    "command",
    "health-check-type",
    "health-check-http-endpoint",
    "health-check-invocation-timeout",
    "timeout",
)
_APP_KEYS = (
    "name",
    "path",
    *_PROCESS_KEYS[1:],
    "buildpacks",
    "buildpack",
    "stack",
    "env",
    "routes",
    "no-route",
    "random-route",
    "default-route",
    "services",
    "metadata",
    "processes",
)
_ROUTE_KEYS = ("route", "protocol", "options")
_SERVICE_KEYS = ("name", "parameters", "binding_name")

# Keys CF knows and Overcast does not do: named as such, not as unknown keys (a typo).
_READINESS = "readiness health checks are not supported by Overcast"
_PROCESS_UNSUPPORTED = {
    "readiness-health-check-type": _READINESS,
    "readiness-health-check-http-endpoint": _READINESS,
    "readiness-health-check-invocation-timeout": _READINESS,
    "readiness-health-check-interval": _READINESS,
    "health-check-interval": "health-check-interval is not supported by Overcast manifests",
}
_REMOVED_ROUTE_KEY = "was removed from CF manifests (cf CLI v7); list routes under routes"
_APP_UNSUPPORTED = {
    **_PROCESS_UNSUPPORTED,
    "docker": "docker images are not supported by Overcast; push source with buildpacks",
    "sidecars": "sidecars are not supported by Overcast",
    "lifecycle": "lifecycle is not supported by Overcast: apps always stage with buildpacks",
    **{key: f"{key} {_REMOVED_ROUTE_KEY}" for key in ("host", "hosts", "domain", "domains")},
    "no-hostname": f"no-hostname {_REMOVED_ROUTE_KEY}",
}
_TOP_UNSUPPORTED = {"inherit": "inherit was removed from CF manifests (cf CLI v7)"}


class _Keys:
    """One mapping of the manifest, read key by key into typed values. A bad value is reported
    (with its line and path) and read as None, so reading goes on and a single pass finds every
    problem of the manifest."""

    def __init__(self, fields: dict[str, _Field], path: str, report: _Report) -> None:
        self.fields = fields
        self.path = path
        self.report = report

    def path_of(self, key: str) -> str:
        return _join(self.path, key)

    def fail(self, key: str, message: str, *, node: _Node | None = None) -> None:
        line = node.line if node is not None else self.fields[key].line
        self.report.add(line, self.path_of(key), message)

    def check(self, known: Sequence[str], unsupported: Mapping[str, str]) -> None:
        for key in self.fields:
            if key in known:
                continue
            if key in unsupported:
                self.fail(key, unsupported[key])
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            self.fail(key, f'unknown key "{key}"{hint}')

    def given(self, key: str) -> bool:
        entry = self.fields.get(key)
        return entry is not None and entry.node.value is not None

    def node(self, key: str) -> _Node | None:
        """The key's value to check: None when absent, null (CF reads null as not given), or
        already reported."""
        entry = self.fields.get(key)
        if entry is None or entry.node.value is None or entry.node.reported:
            return None
        return entry.node

    def _typed(self, key: str, read: Callable[[_Node], Any], expected: str) -> Any:
        node = self.node(key)
        if node is None:
            return None
        value = read(node)
        if value is None:
            self.fail(key, f"{key} must be {expected}, not {_describe(node.value)}", node=node)
        return value

    def text(self, key: str) -> str | None:
        value: str | None = self._typed(key, _node_text, "a string")
        return value

    def boolean(self, key: str) -> bool | None:
        value: bool | None = self._typed(
            key, lambda node: node.value if isinstance(node.value, bool) else None, "true or false"
        )
        return value

    def integer(self, key: str, *, minimum: int) -> int | None:
        value: int | None = self._typed(key, _node_integer, "a whole number")
        if value is not None and value < minimum:
            self.fail(key, f"{key} must be at least {minimum}, not {value}")
            return None
        return value

    def items(self, key: str) -> list[_Node] | None:
        value: list[_Node] | None = self._typed(
            key, lambda node: node.value if isinstance(node.value, list) else None, "a list"
        )
        return value

    def mapping(self, key: str) -> dict[str, _Field] | None:
        value: dict[str, _Field] | None = self._typed(
            key, lambda node: node.value if isinstance(node.value, dict) else None, "a mapping"
        )
        return value

    def texts(self, key: str) -> tuple[str, ...] | None:
        items = self.items(key)
        if items is None:
            return None
        texts: list[str] = []
        for index, item in enumerate(items):
            text = _node_text(item)
            if text is None:
                if not item.reported:
                    self.report.add(
                        item.line,
                        f"{self.path_of(key)}[{index}]",
                        f"must be a string, not {_describe(item.value)}",
                    )
                continue
            texts.append(text)
        return tuple(texts)

    def parsed(self, key: str, parse: Callable[[str], int]) -> int | None:
        """A size given as text (a number with a unit), through `parse`, which says why not."""
        node = self.node(key)
        if node is None:
            return None
        if isinstance(node.value, bool) or not isinstance(node.value, str | int):
            self.fail(key, f"{key} must be a number with a unit, not {_describe(node.value)}")
            return None
        try:
            return parse(str(node.value))
        except ValueError as error:
            self.fail(key, str(error), node=node)
            return None

    def memory(self, key: str) -> int | None:
        return self.parsed(key, lambda text: memory_in_mb(text, what=key))

    def choice(self, key: str, choices: Sequence[str]) -> str | None:
        text = self.text(key)
        if text is not None and text not in choices:
            self.fail(key, f"{key} must be one of {', '.join(choices)}, not {_quoted(text)}")
            return None
        return text

    def required(self, key: str, *, container: _Node) -> str | None:
        """A required, non-blank string (a name, a route, a process type)."""
        if not self.given(key):
            self.report.add(container.line, self.path_of(key), f"{key} is required")
            return None
        text = self.text(key)
        if text is not None and not text.strip():
            self.fail(key, f"{key} must not be blank")
            return None
        return text

    def health_check_type(self, key: str) -> HealthCheckType | None:
        text = self.text(key)
        if text is not None and text not in _HEALTH_CHECK_TYPES:
            self.fail(key, f"{key} must be one of port, process, http, not {_quoted(text)}")
            return None
        return _HEALTH_CHECK_TYPES[text] if text is not None else None


def _node_integer(node: _Node) -> int | None:
    # CF's server reads numeric strings as numbers, and --var values are always strings.
    if isinstance(node.value, str) and _INTEGER.match(node.value):
        return int(node.value)
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


def _read_manifest(root: _Node | None, report: _Report) -> Manifest | None:
    if root is None or root.value is None:
        report.add(1, "", "the manifest is empty; it needs an applications list")
        return None
    if not isinstance(root.value, dict):
        report.add(
            root.line,
            "",
            f"a manifest must be a mapping with an applications list, not {_describe(root.value)}",
        )
        return None
    keys = _Keys(root.value, "", report)
    keys.check(_TOP_KEYS, _TOP_UNSUPPORTED)
    version = keys.integer("version", minimum=0)
    if version is not None and version != MANIFEST_VERSION:
        keys.fail(
            "version", f"only manifest version {MANIFEST_VERSION} is supported, not {version}"
        )
    if not keys.given("applications"):
        report.add(root.line, "applications", "applications is required")
        return None
    items = keys.items("applications")
    if items is None:
        return None
    if not items:
        keys.fail("applications", "applications must list at least one application")
        return None
    apps = [_read_app(item, f"applications[{i}]", report) for i, item in enumerate(items)]
    _check_unique_names(apps, report)
    return Manifest(
        applications=tuple(app for app in apps if app is not None), version=MANIFEST_VERSION
    )


def _check_unique_names(apps: Sequence[AppManifest | None], report: _Report) -> None:
    first_lines: dict[str, int] = {}
    for index, app in enumerate(apps):
        if app is None:
            continue
        if app.name in first_lines:
            report.add(
                app.line,
                f"applications[{index}].name",
                f'duplicate application name "{app.name}" '
                f"(lines {first_lines[app.name]} and {app.line})",
            )
        else:
            first_lines[app.name] = app.line


def _read_app(node: _Node, path: str, report: _Report) -> AppManifest | None:
    if not isinstance(node.value, dict):
        if not node.reported:
            report.add(
                node.line,
                path,
                f"an application must be a mapping (name, memory...), not {_describe(node.value)}",
            )
        return None
    keys = _Keys(node.value, path, report)
    keys.check(_APP_KEYS, _APP_UNSUPPORTED)
    name = _read_app_name(keys, node)
    # Everything is read even without a name: the problems of the rest are wanted too.
    settings = _read_process_settings(keys)
    routes = _read_routes(keys)
    no_route = keys.boolean("no-route")
    if routes is not None and no_route:
        keys.fail("no-route", "routes and no-route: true cannot be used together")
    rest: dict[str, Any] = dict(
        path=keys.text("path"),
        buildpacks=_read_buildpacks(keys),
        stack=keys.text("stack"),
        env=_read_env(keys),
        routes=routes,
        no_route=no_route,
        random_route=keys.boolean("random-route"),
        default_route=keys.boolean("default-route"),
        services=_read_services(keys),
        metadata=_read_metadata(keys),
        processes=_read_processes(keys),
    )
    if name is None:
        return None
    return AppManifest(name=name, line=keys.fields["name"].node.line, **rest, **settings)


def _read_app_name(keys: _Keys, app: _Node) -> str | None:
    name = keys.required("name", container=app)
    if name is None:
        return None
    try:
        return check_name(name, what="Application")
    except Unprocessable as error:
        keys.fail("name", error.detail)
        return None


def _read_process_settings(keys: _Keys) -> dict[str, Any]:
    """What an app gives its web process and a `processes` entry its own, by field name."""
    if keys.given("disk_quota") and keys.given("disk-quota"):
        keys.fail("disk-quota", "give disk_quota or disk-quota, not both")
    disk_key = "disk-quota" if keys.given("disk-quota") else "disk_quota"
    checked_type = keys.health_check_type("health-check-type")
    endpoint = keys.text("health-check-http-endpoint")
    if endpoint is not None and not endpoint.startswith("/"):
        keys.fail("health-check-http-endpoint", "health-check-http-endpoint must start with /")
        endpoint = None
    if endpoint is not None and checked_type not in (None, HealthCheckType.HTTP):
        keys.fail(
            "health-check-http-endpoint",
            "health-check-http-endpoint only applies to health-check-type http, "
            f"not {checked_type}",
        )
    return {
        "instances": keys.integer("instances", minimum=0),
        "memory_in_mb": keys.memory("memory"),
        "disk_in_mb": keys.memory(disk_key),
        "log_rate_limit_in_bytes_per_second": keys.parsed(
            "log-rate-limit-per-second", log_rate_in_bytes
        ),
        "command": keys.text("command"),
        "health_check_type": checked_type,
        "health_check_http_endpoint": endpoint,
        "health_check_invocation_timeout": keys.integer(
            "health-check-invocation-timeout", minimum=1
        ),
        "timeout": keys.integer("timeout", minimum=1),
    }


def _read_buildpacks(keys: _Keys) -> tuple[str, ...] | None:
    buildpacks = keys.texts("buildpacks")
    single = keys.text("buildpack")
    if keys.given("buildpacks") and keys.given("buildpack"):
        keys.fail("buildpack", "give buildpacks or buildpack (deprecated), not both")
        return buildpacks
    # The deprecated single form means a one-item list.
    return (single,) if single is not None else buildpacks


def _read_env(keys: _Keys) -> dict[str, str] | None:
    fields = keys.mapping("env")
    if fields is None:
        return None
    env: dict[str, str] = {}
    for name, entry in fields.items():
        path = _join(keys.path_of("env"), name)
        value = entry.node.value
        if entry.node.reported:
            continue
        if value is None:
            keys.report.add(entry.line, path, f'env {name} has no value; quote "" for empty')
            continue
        if isinstance(value, list | dict):
            keys.report.add(
                entry.line,
                path,
                f"env {name} must be a string, number or boolean, not {_describe(value)}",
            )
            continue
        # CF passes numbers and booleans on as text: 1.5 -> "1.5", yes -> "true".
        text = _yaml_text(value)
        try:
            check_environment_variables({name: text})
        except Unprocessable as error:
            keys.report.add(entry.line, path, error.detail)
            continue
        env[name] = text
    return env


def _read_routes(keys: _Keys) -> tuple[RouteEntry, ...] | None:
    items = keys.items("routes")
    if items is None:
        return None
    routes: list[RouteEntry] = []
    for index, item in enumerate(items):
        route_keys = _item_keys(item, f"{keys.path_of('routes')}[{index}]", keys.report, "a route")
        if route_keys is None:
            continue
        route_keys.check(_ROUTE_KEYS, {})
        route = route_keys.required("route", container=item)
        if route is not None and (route != route.strip() or " " in route):
            route_keys.fail("route", f"route must not contain spaces: {_quoted(route)}")
            route = None
        protocol = route_keys.choice("protocol", _PROTOCOLS)
        loadbalancing = _read_route_options(route_keys)
        if route is not None:
            routes.append(RouteEntry(route, protocol, loadbalancing, line=item.line))
    return tuple(routes)


def _read_route_options(route_keys: _Keys) -> str | None:
    fields = route_keys.mapping("options")
    if fields is None:
        return None
    options = _Keys(fields, route_keys.path_of("options"), route_keys.report)
    options.check(("loadbalancing",), {})
    return options.choice("loadbalancing", _LOAD_BALANCING)


def _item_keys(item: _Node, path: str, report: _Report, what: str) -> _Keys | None:
    if isinstance(item.value, dict):
        return _Keys(item.value, path, report)
    if not item.reported:
        report.add(item.line, path, f"{what} must be a mapping, not {_describe(item.value)}")
    return None


def _read_services(keys: _Keys) -> tuple[ServiceEntry, ...] | None:
    items = keys.items("services")
    if items is None:
        return None
    services: list[ServiceEntry] = []
    for index, item in enumerate(items):
        path = f"{keys.path_of('services')}[{index}]"
        # The short form: just the service instance's name.
        name = _node_text(item)
        if name is not None:
            services.append(ServiceEntry(name, line=item.line))
            continue
        service_keys = _item_keys(item, path, keys.report, "a service (a name or a mapping)")
        if service_keys is None:
            continue
        service_keys.check(_SERVICE_KEYS, {})
        name = service_keys.required("name", container=item)
        parameters = service_keys.mapping("parameters")
        binding_name = service_keys.text("binding_name")
        if name is not None:
            services.append(
                ServiceEntry(
                    name,
                    parameters=_to_python(_Node(item.line, parameters))
                    if parameters is not None
                    else None,
                    binding_name=binding_name,
                    line=item.line,
                )
            )
    return tuple(services)


def _read_metadata(keys: _Keys) -> ManifestMetadata | None:
    fields = keys.mapping("metadata")
    if fields is None:
        return None
    metadata = _Keys(fields, keys.path_of("metadata"), keys.report)
    metadata.check(("labels", "annotations"), {})
    return ManifestMetadata(
        labels=_read_metadata_values(metadata, "labels", check_labels),
        annotations=_read_metadata_values(metadata, "annotations", check_annotations),
    )


def _read_metadata_values(
    metadata: _Keys, key: str, check: Callable[[Mapping[str, str | None]], None]
) -> dict[str, str | None] | None:
    fields = metadata.mapping(key)
    if fields is None:
        return None
    values: dict[str, str | None] = {}
    for name, entry in fields.items():
        path = _join(metadata.path_of(key), name)
        value = entry.node.value
        if entry.node.reported:
            continue
        if value is not None and not isinstance(value, str):
            metadata.report.add(
                entry.line, path, f"must be a string or null, not {_describe(value)} (quote it)"
            )
            continue
        try:
            check({name: value})
        except Unprocessable as error:
            metadata.report.add(entry.line, path, error.detail)
            continue
        values[name] = value
    return values


def _read_processes(keys: _Keys) -> tuple[ProcessManifest, ...] | None:
    items = keys.items("processes")
    if items is None:
        return None
    processes: list[ProcessManifest] = []
    for index, item in enumerate(items):
        path = f"{keys.path_of('processes')}[{index}]"
        process_keys = _item_keys(item, path, keys.report, "a process")
        if process_keys is None:
            continue
        process_keys.check(_PROCESS_KEYS, _PROCESS_UNSUPPORTED)
        process_type = process_keys.required("type", container=item)
        settings = _read_process_settings(process_keys)
        if process_type is None:
            continue
        earlier = next((p for p in processes if p.type == process_type), None)
        line = process_keys.fields["type"].node.line
        if earlier is not None:
            process_keys.fail(
                "type",
                f'duplicate process type "{process_type}" (lines {earlier.line} and {line})',
            )
            continue
        processes.append(ProcessManifest(type=process_type, line=line, **settings))
    return tuple(processes)


# --- public entry points ------------------------------------------------------------------------


def parse_manifest(
    text: str, *, variables: Mapping[str, Any] | None = None, source: str = "manifest.yml"
) -> Manifest:
    """A manifest's text, checked whole, ((variables)) put in. Raises ManifestError listing
    every problem found, each with its line; `source` names the file in messages."""
    root = _compose(text, source)
    report = _Report()
    builder = _Builder(variables or {}, report)
    tree = builder.build(root, "") if root is not None else None
    builder.report_missing()
    manifest = _read_manifest(tree, report)
    report.raise_if_any(source)
    assert manifest is not None
    return manifest


def parse_vars_file(text: str, *, source: str = "vars file") -> dict[str, Any]:
    """A vars file (`--vars-file`): a YAML mapping of variable names to values of any type.
    Read with the manifest's limits (size, depth, no aliases); it is not interpolated."""
    root = _compose(text, source)
    if root is None:
        return {}
    report = _Report()
    tree = _Builder(None, report).build(root, "")
    report.raise_if_any(source)
    if tree.value is None:
        return {}
    if not isinstance(tree.value, dict):
        raise _fail(
            "",
            f"a vars file must be a mapping of names to values, not {_describe(tree.value)}",
            source=source,
            line=tree.line,
        )
    values: dict[str, Any] = _to_python(tree)
    return values


def parse_var_flag(text: str) -> tuple[str, str]:
    """`--var name=value`: the value is taken as a string, as the cf CLI does."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise _fail("flags", f"--var {_quoted(text)} must be name=value", source=None)
    return name.strip(), value


# --- push flags ---------------------------------------------------------------------------------


def apply_flag_overrides(
    manifest: Manifest | None,
    *,
    app_name: str | None = None,
    instances: int | None = None,
    memory_mb: int | None = None,
    disk_mb: int | None = None,
    buildpacks: Sequence[str] | None = None,
    command: str | None = None,
    no_route: bool = False,
    random_route: bool = False,
    stack: str | None = None,
    path: str | None = None,
    health_check_type: str | None = None,
) -> Manifest:
    """The manifest `cf push` acts on, given its flags (None or False: flag not given).

    Without a manifest, or with a one-app manifest, the flags apply to that one app, and
    `app_name` names it (renaming the manifest's app). With several apps, `app_name` picks one
    (the result holds only it) and the flags apply to it; flags without `app_name` are an error,
    as is an `app_name` the manifest does not have. -f, --var, --vars-file and --no-start are
    not app settings and are not passed here. Problems raise ManifestError with path "flags"."""
    report = _Report()
    changes = _flag_changes(
        report,
        instances=instances,
        memory_in_mb=memory_mb,
        disk_in_mb=disk_mb,
        buildpacks=tuple(buildpacks) if buildpacks is not None else None,
        command=command,
        stack=stack,
        path=path,
        health_check_type=health_check_type,
        no_route=no_route,
        random_route=random_route,
    )
    if app_name is not None and not app_name.strip():
        report.add(None, "flags", "the app name must not be blank")
    report.raise_if_any(None)
    target = _target_app(manifest, app_name, has_flags=bool(changes))
    if target is None:
        assert manifest is not None
        return manifest
    version = manifest.version if manifest else MANIFEST_VERSION
    return Manifest(applications=(_with_changes(target, changes),), version=version)


def _flag_changes(
    report: _Report,
    *,
    health_check_type: str | None,
    no_route: bool,
    random_route: bool,
    **settings: Any,
) -> dict[str, Any]:
    changes = {name: value for name, value in settings.items() if value is not None}
    minimums = {
        "instances": ("--instances", 0),
        "memory_in_mb": ("--memory", 1),
        "disk_in_mb": ("--disk", 1),
    }
    for name, (flag, minimum) in minimums.items():
        if name in changes and changes[name] < minimum:
            report.add(None, "flags", f"{flag} must be at least {minimum}, not {changes[name]}")
    if health_check_type is not None:
        if health_check_type not in _HEALTH_CHECK_TYPES:
            report.add(
                None,
                "flags",
                "--health-check-type must be one of port, process, http, "
                f"not {_quoted(health_check_type)}",
            )
        else:
            changes["health_check_type"] = _HEALTH_CHECK_TYPES[health_check_type]
    if no_route and random_route:
        report.add(None, "flags", "--no-route and --random-route cannot be used together")
    if no_route:
        changes.update(no_route=True, routes=None, random_route=None)
    if random_route:
        changes.update(random_route=True, no_route=None)
    return changes


def _target_app(
    manifest: Manifest | None, app_name: str | None, *, has_flags: bool
) -> AppManifest | None:
    """The one app the flags go to, or None when a several-app manifest is pushed whole."""
    apps = manifest.applications if manifest else ()
    if len(apps) > 1:
        if app_name is None:
            if has_flags:
                raise _fail(
                    "flags",
                    "flags cannot be applied when pushing several apps from a manifest; "
                    "name one app",
                    source=None,
                )
            return None
        chosen = next((app for app in apps if app.name == app_name), None)
        if chosen is None:
            names = ", ".join(app.name for app in apps)
            raise _fail(
                "flags", f'app "{app_name}" is not in the manifest (it has {names})', source=None
            )
        return chosen
    if apps:
        return apps[0] if app_name is None else dataclasses.replace(apps[0], name=app_name)
    if app_name is None:
        raise _fail("flags", "name the app to push, or give a manifest", source=None)
    return AppManifest(name=app_name)


def _with_changes(app: AppManifest, changes: Mapping[str, Any]) -> AppManifest:
    process_changes = {name: value for name, value in changes.items() if name in _PROCESS_FIELDS}
    # An endpoint means nothing for another check type, and would not parse back.
    if process_changes.get("health_check_type", HealthCheckType.HTTP) != HealthCheckType.HTTP:
        process_changes["health_check_http_endpoint"] = None
    processes = app.processes
    # A flag beats the manifest, also the web entry of `processes`, which beats the app level.
    if processes is not None and process_changes:
        processes = tuple(
            dataclasses.replace(p, **process_changes) if p.type == "web" else p for p in processes
        )
    return dataclasses.replace(app, **{**changes, **process_changes}, processes=processes)


# --- rendering ----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, but strings holding a line break other than \n are written double
    quoted, where they are escaped: written raw (allow_unicode), NEL reads back as a space."""

    def represent_str(self, data: str) -> yaml.ScalarNode:
        style = '"' if any(ch in _UNICODE_BREAKS for ch in data) else None
        return self.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_UNICODE_BREAKS = "\x85\u2028\u2029"
_Dumper.add_representer(str, _Dumper.represent_str)


def render_manifest(manifest: Manifest) -> str:
    """YAML in CF's shape (what `cf create-app-manifest` and GET /v3/apps/:guid/manifest give):
    an applications list, CF's hyphenated keys in a stable order, fields not given left out."""
    document = {"applications": [_app_document(app) for app in manifest.applications]}
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        explicit_start=True,
    )


def _without_none(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    return {key: value for key, value in pairs if value is not None}


def _maybe(value: Any, render: Callable[[Any], Any]) -> Any:
    return None if value is None else render(value)


def _process_pairs(process: ProcessManifest | AppManifest) -> list[tuple[str, Any]]:
    return [
        ("instances", process.instances),
        ("memory", _maybe(process.memory_in_mb, format_memory)),
        ("disk_quota", _maybe(process.disk_in_mb, format_memory)),
        (
            "log-rate-limit-per-second",
            _maybe(process.log_rate_limit_in_bytes_per_second, format_log_rate),
        ),
    ]


def _health_check_pairs(process: ProcessManifest | AppManifest) -> list[tuple[str, Any]]:
    return [
        ("health-check-type", _maybe(process.health_check_type, str)),
        ("health-check-http-endpoint", process.health_check_http_endpoint),
        ("health-check-invocation-timeout", process.health_check_invocation_timeout),
        ("timeout", process.timeout),
    ]


def _app_document(app: AppManifest) -> dict[str, Any]:
    return _without_none(
        [
            ("name", app.name),
            ("path", app.path),
            *_process_pairs(app),
            ("buildpacks", _maybe(app.buildpacks, list)),
            ("stack", app.stack),
            ("command", app.command),
            *_health_check_pairs(app),
            ("env", _maybe(app.env, dict)),
            ("routes", _maybe(app.routes, lambda routes: [_route_document(r) for r in routes])),
            ("no-route", app.no_route),
            ("random-route", app.random_route),
            ("default-route", app.default_route),
            ("services", _maybe(app.services, lambda items: [_service_document(s) for s in items])),
            ("metadata", _maybe(app.metadata, _metadata_document)),
            (
                "processes",
                _maybe(app.processes, lambda items: [_process_document(p) for p in items]),
            ),
        ]
    )


def _route_document(route: RouteEntry) -> dict[str, Any]:
    options = _maybe(route.loadbalancing, lambda value: {"loadbalancing": value})
    return _without_none(
        [("route", route.route), ("protocol", route.protocol), ("options", options)]
    )


def _service_document(service: ServiceEntry) -> str | dict[str, Any]:
    if service.parameters is None and service.binding_name is None:
        return service.name
    return _without_none(
        [
            ("name", service.name),
            ("binding_name", service.binding_name),
            ("parameters", service.parameters),
        ]
    )


def _metadata_document(metadata: ManifestMetadata) -> dict[str, Any]:
    return _without_none([("labels", metadata.labels), ("annotations", metadata.annotations)])


def _process_document(process: ProcessManifest) -> dict[str, Any]:
    return _without_none(
        [
            ("type", process.type),
            *_process_pairs(process),
            ("command", process.command),
            *_health_check_pairs(process),
        ]
    )

"""The import layering of DESIGN.md section 15, and the rules that go with it: settings are read
from the environment in one place only, and no bus subject is spelled inline."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "overcast"

# What each layer may import, besides itself and the `overcast` package root (__version__).
ALLOWED: dict[str, frozenset[str]] = {
    "models": frozenset(),
    "core": frozenset({"models"}),
    "store": frozenset({"models", "core"}),
    "bus": frozenset({"models", "core"}),
    "jobs": frozenset({"store", "bus", "models", "core"}),
    "auth": frozenset({"store", "models", "core"}),
    "controller": frozenset({"store", "bus", "jobs", "auth", "models", "core"}),
    "health": frozenset({"bus", "client", "models", "core"}),
    "staging": frozenset({"models", "core"}),
    "cell": frozenset({"bus", "staging", "models", "core"}),
    "router": frozenset({"bus", "models", "core"}),
    "services": frozenset({"store", "models", "core"}),
    "ops": frozenset({"bus", "store", "models", "core"}),
    "api": frozenset({"controller", "auth", "models", "core"}),
    "client": frozenset({"models"}),
    "cli": frozenset({"client", "core"}),
}
# Composition roots and test support may import anything.
UNRESTRICTED = frozenset({"cmd", "testing"})


def _modules() -> Iterator[tuple[Path, str, ast.Module]]:
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE)
        layer = relative.parts[0] if len(relative.parts) > 1 else ""
        yield path, layer, ast.parse(path.read_text(), filename=str(path))


def _imported_layers(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "overcast" and len(parts) > 1:
                yield node.lineno, parts[1]


def test_every_layer_is_known() -> None:
    layers = {layer for _, layer, _ in _modules() if layer}
    assert layers <= set(ALLOWED) | UNRESTRICTED, layers - set(ALLOWED) - UNRESTRICTED


def test_imports_point_downwards() -> None:
    violations = []
    for path, layer, tree in _modules():
        if not layer or layer in UNRESTRICTED:
            continue
        for line, imported in _imported_layers(tree):
            if imported != layer and imported not in ALLOWED[layer]:
                violations.append(f"{path.relative_to(SOURCE)}:{line} {layer} -> {imported}")
    assert violations == []


def _reads_environment(tree: ast.Module) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv", "environb")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            lines.append(node.lineno)
    return lines


def test_only_settings_read_the_environment() -> None:
    readers = []
    for path, layer, tree in _modules():
        if layer == "testing" or (path.name == "settings.py" and layer == "core"):
            continue
        readers += [f"{path.relative_to(SOURCE)}:{line}" for line in _reads_environment(tree)]
    assert readers == []


BUS_CALLS = frozenset({"publish", "subscribe", "request"})


def test_no_subject_is_spelled_inline() -> None:
    inline = []
    for path, layer, tree in _modules():
        if layer in ("bus", "testing"):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in BUS_CALLS
                and node.args
                and isinstance(node.args[0], ast.Constant | ast.JoinedStr)
            ):
                inline.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
    assert inline == []


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layering_rules_are_acyclic(layer: str) -> None:
    seen: set[str] = set()
    stack = [layer]
    while stack:
        current = stack.pop()
        for dependency in ALLOWED.get(current, frozenset()):
            assert dependency != layer, f"{layer} can reach itself through {current}"
            if dependency not in seen:
                seen.add(dependency)
                stack.append(dependency)

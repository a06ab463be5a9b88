"""The package-specific part of package checking: the `resources` list, held to the staging
layer's path rule (injected, as the composition root does), and the manifest format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from overcast.controller.package_archive import (
    LINK,
    REGULAR,
    ArchiveRules,
    InvalidPackage,
    ManifestEntry,
    manifest_bytes,
    parse_manifest,
    parse_resources,
    reason,
)
from overcast.staging.archives import ArchiveLimits, UnsafeArchive, check_zip, entry_path
from overcast.staging.archives.common import EntryTree

SHA1 = "a" * 40


def _resources(*items: dict[str, Any]) -> bytes:
    return json.dumps(list(items)).encode()


def _v3(path: str, mode: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"path": path, "size_in_bytes": 1, "checksum": {"value": SHA1}}
    if mode is not None:
        item["mode"] = mode
    return item


def test_the_staging_rules_fit_the_controller_protocols() -> None:
    # What cmd/wiring.py injects (mypy checks the shapes; this checks they run).
    rules = ArchiveRules(
        zip_check=check_zip, path_check=entry_path, new_tree=lambda: EntryTree(ArchiveLimits())
    )
    assert rules.path_check("./a//b/") == "a/b"
    tree = rules.new_tree()
    tree.add("link", "link", "symlink")
    with pytest.raises(ValueError, match="symbolic link"):
        tree.add("link/x", "link/x", "file")


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("../../etc/passwd", "resources: unsafe path '../../etc/passwd': leaves the destination"),
        ("/etc/passwd", "resources: unsafe path '/etc/passwd': name is an absolute path"),
        ("C:/x", "'C:/x': name starts with a Windows drive letter"),
        ("a\\b", "'a\\\\b': name contains a backslash"),
        ("a\x00b", "'a\\x00b': name contains a NUL"),
        ("", "resources: unsafe path '': has an empty name"),
        ("./", "resources: the path './' names the package itself"),
        ("x" * 256, "longer than 255 bytes"),
    ],
)
def test_resource_paths_are_held_to_the_entry_rule(path: str, fragment: str) -> None:
    with pytest.raises(InvalidPackage) as caught:
        parse_resources(_resources(_v3(path)), 10, entry_path)
    assert fragment in caught.value.detail


def test_resource_paths_are_normalised_and_modes_keep_only_the_executable_bit() -> None:
    refs = parse_resources(
        _resources(_v3("./a//b.txt", "600"), _v3("run", "0700"), _v3("plain")), 10, entry_path
    )
    assert [(ref.path, ref.mode) for ref in refs] == [
        ("a/b.txt", REGULAR | 0o644),
        ("run", REGULAR | 0o755),
        ("plain", REGULAR | 0o644),
    ]
    with pytest.raises(InvalidPackage, match="given twice"):
        parse_resources(_resources(_v3("a"), {**_v3("./a"), "size_in_bytes": 2}), 10, entry_path)


def test_reason_leaves_out_the_entry() -> None:
    assert reason(UnsafeArchive("x", "is bad")) == "is bad"
    assert reason(ValueError("plain")) == "plain"


def test_manifest_round_trip_and_format_errors() -> None:
    entries = {
        "b": ManifestEntry(path="b", sha1=SHA1, size=1, mode=REGULAR | 0o755),
        "a": ManifestEntry(path="a", sha1=SHA1, size=1, mode=LINK | 0o777),
    }
    parsed = parse_manifest(manifest_bytes(entries))
    assert parsed == [entries["a"], entries["b"]]
    assert [entry.kind for entry in parsed] == ["symlink", "file"]
    for bad in (b"", b"[]", b'{"version": 2, "files": []}', b'{"version": 1, "files": [{}]}'):
        with pytest.raises(InvalidPackage, match="unknown format"):
            parse_manifest(bad)

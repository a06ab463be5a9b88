"""The droplet check: streamed, nothing extracted, hostile entries and broken archives
refused with a message naming the problem."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from overcast.controller.droplet_archive import (
    InvalidDroplet,
    StagingInfo,
    inspect_droplet,
    parse_staging_info,
)
from overcast.testing.droplets import build_droplet

LIMIT = 10 * 1024 * 1024


def _tgz(*members: tuple[str, bytes | None, bytes, str]) -> bytes:
    """(name, content or None, tar type, link target)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, content, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            info.size = len(content or b"")
            archive.addfile(info, io.BytesIO(content) if content is not None else None)
    return gzip.compress(raw.getvalue())


def _inspect(data: bytes, limit: int = LIMIT) -> object:
    return inspect_droplet(io.BytesIO(data), max_expanded_bytes=limit)


def test_a_built_droplet_passes(tmp_path: Path) -> None:
    built = build_droplet(tmp_path / "d.tgz", process_types={"web": "run", "clock": "tick"})
    data = built.path.read_bytes()
    report = inspect_droplet(io.BytesIO(data), max_expanded_bytes=LIMIT)
    assert report.sha256 == built.sha256 == hashlib.sha256(data).hexdigest()
    assert report.size == len(data)
    assert report.entries == 3
    assert report.staging_info == StagingInfo(
        detected_buildpack="test",
        start_command="run",
        process_types={"web": "run", "clock": "tick"},
    )


def test_links_inside_the_tree_are_fine() -> None:
    report = inspect_droplet(
        io.BytesIO(
            _tgz(
                ("app/", None, tarfile.DIRTYPE, ""),
                ("app/lib/real.py", b"x", tarfile.REGTYPE, ""),
                ("app/current", None, tarfile.SYMTYPE, "lib/real.py"),
                ("app/lib/up", None, tarfile.SYMTYPE, "../current"),
                ("app/hard", None, tarfile.LNKTYPE, "app/lib/real.py"),
            )
        ),
        max_expanded_bytes=LIMIT,
    )
    assert report.staging_info is None and report.entries == 5


@pytest.mark.parametrize(
    "members, fragment",
    [
        ((("../x", b"", tarfile.REGTYPE, ""),), "'../x'"),
        ((("app/../../x", b"", tarfile.REGTYPE, ""),), "'app/../../x'"),
        ((("/abs", b"", tarfile.REGTYPE, ""),), "'/abs'"),
        ((("C:/windows", b"", tarfile.REGTYPE, ""),), "'C:/windows'"),
        ((("app\\x", b"", tarfile.REGTYPE, ""),), "unsafe"),
        ((("app/l", None, tarfile.SYMTYPE, "../../etc/passwd"),), "'app/l'"),
        ((("app/l", None, tarfile.SYMTYPE, "/etc/passwd"),), "'app/l'"),
        ((("app/l", None, tarfile.SYMTYPE, ""),), "'app/l'"),
        ((("app/h", None, tarfile.LNKTYPE, "../outside"),), "'app/h'"),
        ((("app/fifo", None, tarfile.FIFOTYPE, ""),), "special file"),
        ((("app/dev", None, tarfile.BLKTYPE, ""),), "special file"),
        ((("staging_info.yml", None, tarfile.DIRTYPE, ""),), "regular file"),
    ],
)
def test_hostile_entries_are_named(
    members: tuple[tuple[str, bytes | None, bytes, str], ...], fragment: str
) -> None:
    with pytest.raises(InvalidDroplet) as error:
        _inspect(_tgz(*members))
    assert fragment in error.value.detail


def test_broken_archives(tmp_path: Path) -> None:
    good = build_droplet(tmp_path / "d.tgz").path.read_bytes()
    for data, fragment in (
        (b"", "not a valid tar archive"),
        (b"plain text", "not a gzipped tarball"),
        (good[:40], "truncated"),
        (good[: len(good) - 4], "truncated"),
        (good[:-8] + bytes(8), "corrupt"),
        (good + b"trailing", "not a gzipped tarball"),
        (gzip.compress(b"not a tar" * 100), "not a valid tar archive"),
    ):
        with pytest.raises(InvalidDroplet) as error:
            _inspect(data)
        assert fragment in error.value.detail, (data[:20], error.value.detail)


def test_expansion_is_bounded() -> None:
    bomb = _tgz(("app/zeros", bytes(5 * 1024 * 1024), tarfile.REGTYPE, ""))
    assert len(bomb) < 20_000
    with pytest.raises(InvalidDroplet) as error:
        _inspect(bomb, limit=1024 * 1024)
    assert "over-compressed" in error.value.detail


def test_staging_info_parsing() -> None:
    assert parse_staging_info(b"") == StagingInfo()
    assert parse_staging_info(b"start_command: ./go\n").process_types == {"web": "./go"}
    assert parse_staging_info(
        b"process_types: {web: a, worker: b}\nstart_command: c\ndetected_buildpack: py\n"
    ) == StagingInfo(
        detected_buildpack="py", start_command="c", process_types={"web": "a", "worker": "b"}
    )
    # Empty commands are dropped (CF's default for a type without a command).
    assert parse_staging_info(b"process_types: {web: '', worker: b}").process_types == {
        "worker": "b"
    }
    for bad, fragment in (
        (b"- a list", "mapping"),
        (b"process_types: x", "process_types"),
        (b"process_types: {'bad type!': x}", "invalid process type"),
        (b"process_types: {web: [1]}", "web"),
        (b"process_types: {web: " + b"x" * 5000 + b"}", "web"),
        (b"detected_buildpack: [1]", "detected_buildpack"),
        (b"!!python/object:os.system {}", "not valid YAML"),
        (b"\xff\xfe", "not valid YAML"),
        (b"a: [", "not valid YAML"),
    ):
        with pytest.raises(InvalidDroplet) as error:
            parse_staging_info(bad)
        assert fragment in error.value.detail, (bad[:30], error.value.detail)

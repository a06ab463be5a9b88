"""The safe tar extractor against a small corpus of hostile archives."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from overcast.staging.archives import ArchiveLimits, UnsafeArchive, safe_extract

Builder = Callable[[tarfile.TarFile], None]


def _tarball(path: Path, build: Builder) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        build(archive)
    return path


def _file(archive: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _special(kind: bytes, target: str = "") -> Builder:
    def build(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("app/special")
        info.type = kind
        info.linkname = target
        archive.addfile(info)

    return build


def _entry(name: str, kind: bytes, target: str = "") -> Builder:
    def build(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        archive.addfile(info)

    return build


def _many(count: int) -> Builder:
    def build(archive: tarfile.TarFile) -> None:
        for number in range(count):
            _file(archive, f"app/f{number}")

    return build


def _with_file_first(name: str, then: Builder) -> Builder:
    def build(archive: tarfile.TarFile) -> None:
        _file(archive, name)
        then(archive)

    return build


HOSTILE: dict[str, tuple[Builder, str]] = {
    "absolute path": (lambda a: _file(a, "/tmp/evil"), "/tmp/evil"),
    "parent dir": (lambda a: _file(a, "../x"), "../x"),
    "parent inside": (lambda a: _file(a, "app/../../x"), "app/../../x"),
    "symlink to /etc": (_entry("app/etc", tarfile.SYMTYPE, "/etc"), "app/etc"),
    "symlink up": (_entry("app/up", tarfile.SYMTYPE, "../../.."), "app/up"),
    "hardlink outside": (_entry("app/shadow", tarfile.LNKTYPE, "/etc/shadow"), "app/shadow"),
    "hardlink to unknown": (_entry("app/h", tarfile.LNKTYPE, "app/nothing"), "app/h"),
    "fifo": (_special(tarfile.FIFOTYPE), "app/special"),
    "char device": (_special(tarfile.CHRTYPE), "app/special"),
    "block device": (_special(tarfile.BLKTYPE), "app/special"),
    "write through link": (
        lambda a: (
            _entry("app/dir", tarfile.SYMTYPE, ".")(a),
            _file(a, "app/dir/file"),
        ),
        "app/dir/file",
    ),
    "duplicate link": (
        lambda a: (
            _entry("app/l", tarfile.SYMTYPE, "x")(a),
            _entry("app/l", tarfile.SYMTYPE, "y")(a),
        ),
        "app/l",
    ),
    "too many entries": (_many(11), "more than 10 entries"),
    "too large": (lambda a: _file(a, "app/big", b"y" * 2048), "larger than 1024 bytes"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_naming_the_entry(tmp_path: Path, case: str) -> None:
    build, named = HOSTILE[case]
    archive = _tarball(tmp_path / "evil.tgz", build)
    destination = tmp_path / "out"
    with pytest.raises(UnsafeArchive) as raised:
        safe_extract(archive, destination, ArchiveLimits(max_entries=10, max_bytes=1024))
    assert named in str(raised.value)
    # Nothing is written before the whole archive was checked.
    assert not destination.exists() or not any(destination.rglob("*"))


def test_symlink_chain_that_escapes_is_refused(tmp_path: Path) -> None:
    def build(archive: tarfile.TarFile) -> None:
        _entry("app/sub", tarfile.DIRTYPE)(archive)
        _entry("app/sibling", tarfile.DIRTYPE)(archive)
        # Each link alone stays inside; followed together they climb out.
        _entry("app/sub/x", tarfile.SYMTYPE, "../sibling")(archive)
        _entry("app/sub/y", tarfile.SYMTYPE, "x/../../..")(archive)

    archive = _tarball(tmp_path / "chain.tgz", build)
    with pytest.raises(UnsafeArchive, match="outside"):
        safe_extract(archive, tmp_path / "out")


def test_a_plain_droplet_is_extracted(tmp_path: Path) -> None:
    def build(archive: tarfile.TarFile) -> None:
        _entry("app", tarfile.DIRTYPE)(archive)
        _file(archive, "app/app.py", b"print('hi')\n")
        _entry("app/bin", tarfile.DIRTYPE)(archive)
        _entry("app/bin/run", tarfile.SYMTYPE, "../app.py")(archive)
        _entry("app/copy.py", tarfile.LNKTYPE, "app/app.py")(archive)
        _file(archive, "staging_info.yml", b"start_command: x\n")

    archive = _tarball(tmp_path / "ok.tgz", build)
    out = tmp_path / "out"
    assert safe_extract(archive, out) == 6
    assert (out / "app" / "bin" / "run").read_text() == "print('hi')\n"
    assert (out / "app" / "copy.py").read_text() == "print('hi')\n"


def test_not_a_tarball(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not a tar file at all")
    with pytest.raises(UnsafeArchive, match="not a readable tar"):
        safe_extract(junk, tmp_path / "out")

"""The zip package extractor against a corpus of hostile packages, each built here.

Well-formed but hostile zips are written with `zipfile` and hand-made `ZipInfo`s; those zipfile
will not write (NUL in a name, encryption flags, lying sizes, shared data) are assembled byte by
byte by `_raw_zip`."""

from __future__ import annotations

import hashlib
import io
import pickle
import random
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from overcast.staging.archives import (
    ArchiveLimits,
    UnsafeArchive,
    ZipEntryInfo,
    check_zip,
    safe_extract_zip,
)
from overcast.staging.archives.common import quote

Builder = Callable[[Path], None]

LIMITS = ArchiveLimits(
    max_entries=10, max_bytes=4096, max_file_bytes=2048, max_ratio=100, ratio_floor_bytes=1024
)
# For the bombs: room for large files, so that only the ratio can refuse them.
ROOMY = ArchiveLimits(max_bytes=10**8, max_file_bytes=10**8, ratio_floor_bytes=1024)

FILE = stat.S_IFREG | 0o644
DIRECTORY = stat.S_IFDIR | 0o755
SYMLINK = stat.S_IFLNK | 0o777


# Writing with zipfile.


@dataclass(frozen=True)
class Entry:
    name: str
    data: bytes = b"x"
    mode: int = FILE
    method: int = zipfile.ZIP_DEFLATED
    system: int = 3


def _link(name: str, target: str) -> Entry:
    return Entry(name, target.encode(), SYMLINK)


def _dir(name: str) -> Entry:
    return Entry(name, b"", DIRECTORY, zipfile.ZIP_STORED)


def _zip(*entries: Entry) -> Builder:
    def build(path: Path) -> None:
        with zipfile.ZipFile(path, "w") as archive, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about duplicate names
            for entry in entries:
                info = zipfile.ZipInfo(entry.name)
                info.filename = entry.name  # the constructor would cut it at a NUL
                info.external_attr = entry.mode << 16
                info.create_system = entry.system
                info.compress_type = entry.method
                archive.writestr(info, entry.data)

    return build


# Writing byte by byte.


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@dataclass
class Raw:
    """One entry as stored: `payload` is written as is, every header field can lie."""

    name: bytes
    payload: bytes = b"x"
    method: int = zipfile.ZIP_STORED
    crc: int = zlib.crc32(b"x")
    size: int = 1
    compressed_size: int | None = None  # None: len(payload)
    flags: int = 0
    mode: int = FILE
    local_name: bytes | None = None  # None: `name`
    aliases: Sequence[bytes] = field(default_factory=tuple)  # more names for the same data


def _deflated(name: bytes, data: bytes, **overrides: object) -> Raw:
    raw = Raw(name, _deflate(data), zipfile.ZIP_DEFLATED, zlib.crc32(data), len(data))
    for key, value in overrides.items():
        setattr(raw, key, value)
    return raw


def _raw_zip(*records: Raw) -> Builder:
    def build(path: Path) -> None:
        body, central, count = bytearray(), bytearray(), 0
        for raw in records:
            offset = len(body)
            compressed = len(raw.payload) if raw.compressed_size is None else raw.compressed_size
            local_name = raw.name if raw.local_name is None else raw.local_name
            common = (raw.flags, raw.method, 0, 0x21, raw.crc, compressed, raw.size)
            body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, *common, len(local_name), 0)
            body += local_name + raw.payload
            for name in (raw.name, *raw.aliases):
                central += struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    *(0x02014B50, 3 << 8 | 20, 20, *common, len(name), 0, 0, 0, 0),
                    *(raw.mode << 16, offset),
                )
                central += name
                count += 1
        end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), len(body), 0)
        path.write_bytes(bytes(body + central + end))

    return build


def _bytes(data: bytes) -> Builder:
    def build(path: Path) -> None:
        path.write_bytes(data)

    return build


def _truncated() -> Builder:
    def build(path: Path) -> None:
        _zip(Entry("app/a.py", b"print(1)\n" * 50), Entry("app/b.py"))(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return build


def _damaged() -> Builder:
    def build(path: Path) -> None:
        data = b"".join(bytes([n % 7]) * 3 for n in range(200))
        _raw_zip(_deflated(b"app/data", data))(path)
        content = bytearray(path.read_bytes())
        content[40] ^= 0xFF  # inside the deflate stream
        path.write_bytes(bytes(content))

    return build


NOISE = random.Random(7).randbytes(2000)  # incompressible
BOMB = NOISE + bytes(98_000)  # about 47:1, under the ratio on its own


@dataclass(frozen=True)
class Case:
    build: Builder
    entry: str | None  # the archive's name for the offending entry
    reason: str
    limits: ArchiveLimits = LIMITS


HOSTILE: dict[str, Case] = {
    # Names.
    "absolute path": Case(_zip(Entry("/etc/passwd")), "/etc/passwd", "absolute"),
    "parent dir": Case(_zip(Entry("../x")), "../x", "leaves the destination directory"),
    "parent inside": Case(_zip(Entry("app/../../x")), "app/../../x", "leaves"),
    "parent of a dir": Case(_zip(_dir("app/../../")), "app/../../", "leaves"),
    "backslash climb": Case(_zip(Entry("..\\..\\x")), "..\\..\\x", "backslash"),
    "backslash": Case(_zip(Entry("app\\x")), "app\\x", "backslash"),
    "drive letter": Case(_zip(Entry("C:/Windows/x")), "C:/Windows/x", "drive letter"),
    "drive relative": Case(_zip(Entry("C:x")), "C:x", "drive letter"),
    "drive behind dot": Case(_zip(Entry("./D:/x")), "./D:/x", "drive letter"),
    "NUL": Case(_raw_zip(Raw(b"app/x.py\x00.txt")), "app/x.py\x00.txt", "control character"),
    "newline": Case(_zip(Entry("app/a\nb")), "app/a\nb", "control character"),
    "escape sequence": Case(_zip(Entry("app/\x1b[2J")), "app/\x1b[2J", "control character"),
    "C1 control": Case(_zip(Entry("app/\x9bx")), "app/\x9bx", "control character"),
    "empty name": Case(_raw_zip(Raw(b"")), "", "empty name"),
    "root as a file": Case(_zip(Entry("./")), "./", "is a directory with content"),
    "long component": Case(_zip(Entry("a" * 256)), "a" * 256, "longer than 255 bytes"),
    "long path": Case(_zip(Entry("a/" * 2048 + "b")), "a/" * 2048 + "b", "path longer"),
    "bad UTF-8 name": Case(_raw_zip(Raw(b"\xff\xfe", flags=0x800)), None, "not a readable zip"),
    # Entries that replace or write into one another.
    "duplicate": Case(_zip(Entry("app/a"), Entry("app/a")), "app/a", "appears twice"),
    "duplicate with dot": Case(_zip(Entry("a/b"), Entry("a/./b")), "a/./b", "appears twice"),
    "duplicate with slashes": Case(_zip(Entry("a/b"), Entry("a//b")), "a//b", "appears twice"),
    "duplicate leading dot": Case(_zip(Entry("a"), Entry("./a")), "./a", "appears twice"),
    "dir and file": Case(_zip(_dir("a/"), Entry("a")), "a", "appears twice"),
    "file then inside it": Case(_zip(Entry("a"), Entry("a/b")), "a/b", "inside the file"),
    "inside then the file": Case(_zip(Entry("a/b"), Entry("a")), "a", "other entries are inside"),
    # Symbolic links.
    "symlink to /etc": Case(_zip(_link("app/etc", "/etc")), "app/etc", "absolute"),
    "symlink up": Case(_zip(_link("app/up", "../..")), "app/up", "outside"),
    "symlink backslash": Case(_zip(_link("app/l", "..\\..")), "app/l", "backslash"),
    "symlink NUL": Case(_zip(_link("app/l", "a\x00b")), "app/l", "control character"),
    "symlink empty": Case(_zip(_link("app/l", "")), "app/l", "empty target"),
    "symlink not UTF-8": Case(_zip(Entry("app/l", b"\xff", SYMLINK)), "app/l", "UTF-8"),
    "symlink named as dir": Case(_zip(_link("app/l/", "x")), "app/l/", "named like a directory"),
    "symlink target too long": Case(
        _zip(_link("app/l", "a/" * 2100)), "app/l", "oversized target", ROOMY
    ),
    "symlink chain": Case(
        _zip(
            _dir("app/sub/"),
            _dir("app/sibling/"),
            # Each stays inside on its own; followed together they climb out.
            _link("app/sub/x", "../sibling"),
            _link("app/sub/y", "x/../../.."),
        ),
        "app/sub/y",
        "resolves outside",
    ),
    "symlink chain through dirs": Case(
        _zip(_link("a", "b/c"), _link("b/c", ".."), _link("z", "a/..")),
        "z",
        "resolves outside",
    ),
    "symlink loop": Case(_zip(_link("a", "b"), _link("b", "a")), "a", "loop"),
    "write through symlink": Case(
        _zip(_link("app/d", "."), Entry("app/d/f")), "app/d/f", "through a symbolic link"
    ),
    "symlink over a dir": Case(_zip(Entry("d/f"), _link("d", ".")), "d", "inside"),
    # Special files.
    "fifo": Case(_zip(Entry("app/p", b"", stat.S_IFIFO | 0o644)), "app/p", "special file"),
    "socket": Case(_zip(Entry("app/s", b"", stat.S_IFSOCK | 0o644)), "app/s", "special"),
    "char device": Case(_zip(Entry("app/c", b"", stat.S_IFCHR | 0o644)), "app/c", "special"),
    "block device": Case(_zip(Entry("app/b", b"", stat.S_IFBLK | 0o644)), "app/b", "special"),
    "unknown type": Case(_zip(Entry("app/w", b"", 0o160644)), "app/w", "special"),
    "directory with content": Case(_zip(Entry("app/d/", b"data", DIRECTORY)), "app/d/", "content"),
    # Limits.
    "too many entries": Case(
        _zip(*(Entry(f"app/f{n}") for n in range(11))), "app/f10", "more than 10 entries"
    ),
    "file too large": Case(_zip(Entry("app/big", b"y" * 2049)), "app/big", "larger than 2048"),
    "total too large": Case(
        _zip(*(Entry(f"app/{n}", NOISE[:1500]) for n in range(3))), "app/2", "larger than 4096"
    ),
    "declared too large": Case(
        _raw_zip(Raw(b"app/liar", size=10**9, method=zipfile.ZIP_DEFLATED)),
        "app/liar",
        "larger than 2048",
    ),
    "bomb": Case(_zip(Entry("app/zeros", bytes(200_000))), "app/zeros", "expands", ROOMY),
    "overlapping bomb": Case(
        _raw_zip(_deflated(b"a", BOMB, aliases=[b"b", b"c", b"d", b"e", b"f", b"g"])),
        "c",
        "the archive expands more than 100 times",
        ROOMY,
    ),
    "overlapping entries": Case(_raw_zip(Raw(b"a", aliases=[b"b"])), "a", "overlaps"),
    "data past the directory": Case(
        _raw_zip(Raw(b"a", compressed_size=500, size=500)), "a", "overlaps"
    ),
    # Lies about the data.
    "more bytes than declared": Case(
        _raw_zip(_deflated(b"app/more", NOISE[:600], size=100)), "app/more", "more than the 100"
    ),
    "fewer bytes than declared": Case(
        _raw_zip(_deflated(b"app/less", NOISE[:100], size=600)), "app/less", "holds 100 bytes"
    ),
    "stored sizes differ": Case(
        _raw_zip(Raw(b"app/s", b"xyz", size=2, crc=zlib.crc32(b"xy"))), "app/s", "two different"
    ),
    "trailing data": Case(
        _raw_zip(
            Raw(b"app/t", _deflate(b"hi") + b"junk", zipfile.ZIP_DEFLATED, zlib.crc32(b"hi"), 2)
        ),
        "app/t",
        "after the end",
    ),
    "bad CRC": Case(_raw_zip(Raw(b"app/c", crc=1234)), "app/c", "CRC"),
    "damaged stream": Case(_damaged(), "app/data", "inflate"),
    "local name differs": Case(
        _raw_zip(Raw(b"app/ok", local_name=b"../okk")), "app/ok", "local header"
    ),
    # The format.
    "encrypted": Case(_raw_zip(Raw(b"app/secret", flags=0x1)), "app/secret", "encrypted"),
    "strongly encrypted": Case(_raw_zip(Raw(b"app/s", flags=0x41)), "app/s", "encrypted"),
    "bzip2": Case(
        _zip(Entry("app/b", b"data", method=zipfile.ZIP_BZIP2)), "app/b", "compression method 12"
    ),
    "lzma": Case(_zip(Entry("app/l", b"data", method=zipfile.ZIP_LZMA)), "app/l", "method 14"),
    "unknown method": Case(_raw_zip(Raw(b"app/u", method=99)), "app/u", "method 99"),
    "not a zip": Case(_bytes(b"this is not a zip file at all"), None, "not a readable zip"),
    "empty file": Case(_bytes(b""), None, "not a readable zip"),
    "a tarball": Case(_bytes(b"\x1f\x8b\x08\x00" + bytes(100)), None, "not a readable zip"),
    "truncated": Case(_truncated(), None, "not a readable zip"),
}


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def _refusal(case: Case, error: UnsafeArchive) -> None:
    assert error.entry == case.entry
    assert case.reason in str(error)
    if case.entry is not None:
        # Named, and escaped so that a hostile name cannot forge lines in a log.
        assert str(error).startswith(f"entry {quote(case.entry)}: ")
        assert "\n" not in str(error) and "\x00" not in str(error)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_package_is_refused_leaving_nothing(tmp_path: Path, name: str) -> None:
    case = HOSTILE[name]
    package = tmp_path / "evil.zip"
    case.build(package)
    work = tmp_path / "work"
    work.mkdir()
    before = _tree(tmp_path)
    with pytest.raises(UnsafeArchive) as raised:
        safe_extract_zip(package, work / "app", case.limits)
    _refusal(case, raised.value)
    # Nothing outside the destination, no destination, no half-extracted staging directory.
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_package_fails_the_check(tmp_path: Path, name: str) -> None:
    case = HOSTILE[name]
    package = tmp_path / "evil.zip"
    case.build(package)
    with pytest.raises(UnsafeArchive) as raised:
        check_zip(package, case.limits)
    _refusal(case, raised.value)
    assert _tree(tmp_path) == {package}


def test_raw_builder_writes_a_readable_zip(tmp_path: Path) -> None:
    # Else the byte-built part of the corpus would be refused for the wrong reasons.
    package = tmp_path / "raw.zip"
    _raw_zip(Raw(b"a/plain"), _deflated(b"a/deflated", b"hello " * 10))(package)
    with zipfile.ZipFile(package) as archive:
        assert archive.read("a/deflated") == b"hello " * 10
        assert archive.read("a/plain") == b"x"
    assert [info.path for info in check_zip(package)] == ["a/plain", "a/deflated"]


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


GOOD = _zip(
    _dir("./"),
    _dir("app/"),
    Entry("app/app.py", b"print('hi')\n"),
    Entry("app/lib/deep/nested/mod.py", b"x = 1\n"),  # parents never listed
    _dir("app/empty/"),
    Entry("app/bin/run", b"#!/bin/sh\n", FILE | 0o755),
    Entry("app/bin/setuid", b"#!/bin/sh\n", stat.S_IFREG | 0o4755),
    Entry("app/private", b"p", stat.S_IFREG | 0o600),
    Entry("app/odd", b"o", stat.S_IFREG | 0o1777),
    Entry("app/caf\u00e9/na\u00efve \u65e5\u672c.txt", "\u00e9t\u00e9".encode()),
    Entry("app/zeros", bytes(1000)),  # ratio way over 100, but under the floor
    Entry("app/stored", b"s" * 50, method=zipfile.ZIP_STORED),
    Entry("win/readme.txt", b"from windows", 0, system=0),
    _link("app/bin/start", "../app.py"),
    _link("app/current", "lib/deep"),
    _link("app/mod", "current/nested/mod.py"),  # a chain, staying inside
    _link("app/self", "."),
)


def test_a_good_package_is_extracted(tmp_path: Path) -> None:
    package = tmp_path / "good.zip"
    GOOD(package)
    out = tmp_path / "work" / "app"
    infos = safe_extract_zip(package, out)
    by_path = {info.path: info for info in infos}
    assert (out / "app" / "app.py").read_text() == "print('hi')\n"
    assert (out / "app" / "lib" / "deep" / "nested" / "mod.py").read_text() == "x = 1\n"
    assert (out / "app" / "empty").is_dir() and not any((out / "app" / "empty").iterdir())
    assert (
        out / "app" / "caf\u00e9" / "na\u00efve \u65e5\u672c.txt"
    ).read_text() == "\u00e9t\u00e9"
    assert (out / "app" / "zeros").read_bytes() == bytes(1000)
    assert (out / "win" / "readme.txt").read_bytes() == b"from windows"
    # Links work, inside the tree.
    assert (out / "app" / "bin" / "start").read_text() == "print('hi')\n"
    assert (out / "app" / "mod").read_text() == "x = 1\n"
    assert (out / "app" / "self" / "app.py").is_file()
    assert by_path["app/bin/start"] == ZipEntryInfo(
        "app/bin/start", "symlink", 9, _sha1(b"../app.py"), 0o777
    )
    assert by_path["app/app.py"] == ZipEntryInfo(
        "app/app.py", "file", 12, _sha1(b"print('hi')\n"), 0o644
    )
    assert by_path["app/empty"] == ZipEntryInfo("app/empty", "directory", 0, None, 0o755)
    assert "" not in by_path  # "./" is the destination itself
    # No staging directory left beside it.
    assert sorted(path.name for path in out.parent.iterdir()) == ["app"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_only_the_executable_bit_survives(tmp_path: Path) -> None:
    package = tmp_path / "good.zip"
    GOOD(package)
    out = tmp_path / "out"
    infos = {info.path: info.mode for info in safe_extract_zip(package, out)}
    expected = {
        "app/app.py": 0o644,
        "app/bin/run": 0o755,
        "app/bin/setuid": 0o755,
        "app/private": 0o644,
        "app/odd": 0o755,
        "win/readme.txt": 0o644,
    }
    for path, mode in expected.items():
        assert infos[path] == mode, path
        assert _mode(out / path) == mode, path
    for directory in (out, out / "app", out / "app" / "empty", out / "app" / "lib" / "deep"):
        assert _mode(directory) == 0o755, directory


def test_check_reports_what_extraction_writes(tmp_path: Path) -> None:
    package = tmp_path / "good.zip"
    GOOD(package)
    checked = check_zip(package)
    assert checked == safe_extract_zip(package, tmp_path / "out")
    assert not (tmp_path / "out-not-made").exists()
    files = {info.path: info for info in checked if info.kind == "file"}
    for path, info in files.items():
        data = (tmp_path / "out" / path).read_bytes()
        assert (info.size, info.sha1) == (len(data), _sha1(data)), path


class _Unseekable(io.RawIOBase):
    """A pipe-like sink: zipfile then writes sizes after the data (as Go's archive/zip, which
    the cf CLI uses, always does)."""

    def __init__(self, sink: io.BufferedWriter) -> None:
        self.sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        assert isinstance(data, bytes | bytearray | memoryview)
        return self.sink.write(data)


def test_sizes_after_the_data_are_fine(tmp_path: Path) -> None:
    package = tmp_path / "streamed.zip"
    with package.open("wb") as sink, zipfile.ZipFile(_Unseekable(sink), "w") as archive:
        archive.writestr("app/a.py", b"a = 1\n" * 100, zipfile.ZIP_DEFLATED)
        archive.writestr("app/b.txt", b"b")
    with zipfile.ZipFile(package) as archive:
        assert all(info.flag_bits & 0x08 for info in archive.infolist())
    infos = safe_extract_zip(package, tmp_path / "out")
    assert [(info.path, info.size) for info in infos] == [("app/a.py", 600), ("app/b.txt", 1)]
    assert (tmp_path / "out" / "app" / "a.py").read_bytes() == b"a = 1\n" * 100


def test_destination_may_be_an_empty_directory(tmp_path: Path) -> None:
    package = tmp_path / "p.zip"
    _zip(Entry("a.txt", b"a"))(package)
    out = tmp_path / "out"
    out.mkdir()
    safe_extract_zip(package, out)
    assert (out / "a.txt").read_bytes() == b"a"


def test_destination_is_never_replaced(tmp_path: Path) -> None:
    package = tmp_path / "p.zip"
    _zip(Entry("a.txt", b"a"))(package)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("mine")
    with pytest.raises(FileExistsError):
        safe_extract_zip(package, out)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "p.zip"]
    assert (out / "keep").read_text() == "mine"


def test_refusal_midway_removes_what_was_written(tmp_path: Path) -> None:
    # Good files first, then one that lies: refused only while inflating, after writing.
    package = tmp_path / "p.zip"
    _raw_zip(
        Raw(b"app/one"),
        _deflated(b"app/two", b"two" * 100),
        _deflated(b"app/liar", NOISE[:600], size=100),
    )(package)
    with pytest.raises(UnsafeArchive, match="app/liar"):
        safe_extract_zip(package, tmp_path / "work" / "out")
    assert list((tmp_path / "work").iterdir()) == []


def test_refusal_is_a_value_error_that_pickles() -> None:
    error = UnsafeArchive("../x", "leaves the destination directory")
    # Our own bytes, just made: what crosses a process pool.
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301
    assert isinstance(copy, ValueError)
    assert (copy.entry, copy.reason) == ("../x", "leaves the destination directory")
    assert str(copy) == 'entry "../x": leaves the destination directory'
    assert str(UnsafeArchive(None, "not a readable zip archive")) == "not a readable zip archive"


def test_an_empty_zip_is_a_valid_empty_package(tmp_path: Path) -> None:
    # A re-push whose files the server already has uploads an empty zip.
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w"):
        pass
    assert check_zip(path) == []
    assert safe_extract_zip(path, tmp_path / "out") == []
    assert list((tmp_path / "out").iterdir()) == []

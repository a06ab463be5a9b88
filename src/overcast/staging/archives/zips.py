"""A zip extractor for app packages (CF `POST /v3/packages/:guid/upload`, DESIGN.md section 9).

Two passes over one open file. The first reads only the central directory: names, kinds,
declared sizes, compression ratios, encryption, methods and overlapping entries, so most hostile
packages are refused before a byte is inflated. The second inflates each entry itself (zlib,
not zipfile's reader, which silently cuts an entry at its declared size and ignores what
follows), refusing as soon as it holds more than it declared, and hashes it: CF resource
matching wants sha1s. Symbolic links are made last, after every link was followed on paper, so
nothing is ever written through one. Extraction goes into a sibling temporary directory that is
renamed onto the destination at the end: a refused package leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from overcast.staging.archives.common import (
    MAX_PATH_BYTES,
    ArchiveLimits,
    EntryKind,
    EntryTree,
    UnsafeArchive,
    entry_path,
)

CHUNK_BYTES = 1024 * 1024
FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755
DIRECTORY_MODE = 0o755
SYMLINK_MODE = 0o777

# General purpose flags (APPNOTE 4.4.4): traditional and strong encryption, UTF-8 names.
_ENCRYPTED_FLAGS = 0x0001 | 0x0040
_UTF8_FLAG = 0x0800
# MS-DOS attribute in the low byte of external_attr, for packages made on Windows.
_DOS_DIRECTORY = 0x10
# A local file header: its signature, and its fixed part (the name and extra field follow).
_LOCAL_SIGNATURE = b"PK\x03\x04"
_LOCAL_HEADER_BYTES = 30
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# What zipfile raises on a damaged central directory, besides OSError for a file that cannot be
# read at all (not the package's fault, so it propagates).
_CORRUPT = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    struct.error,
    NotImplementedError,
    ValueError,
)


@dataclass(frozen=True)
class ZipEntryInfo:
    """One entry of a checked package: what resource matching needs."""

    # Relative, "/"-separated and normalised; never "" (the package root is not listed).
    path: str
    kind: EntryKind
    # Bytes of content: the file's, or the link's target; 0 for a directory.
    size: int
    # Hex sha1 of that content; None for a directory.
    sha1: str | None
    # 0o644 or 0o755 for a file, 0o755 for a directory, 0o777 for a link.
    mode: int


@dataclass(frozen=True)
class _Planned:
    info: zipfile.ZipInfo
    path: str
    kind: EntryKind
    mode: int

    @property
    def name(self) -> str:
        # Not `filename`: zipfile cuts that at the first NUL, which is how NUL tricks hide.
        return self.info.orig_filename


def _open(source: IO[bytes]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except _CORRUPT as error:
        raise UnsafeArchive(None, f"not a readable zip archive: {error}") from None


def _unix_mode(info: zipfile.ZipInfo) -> int:
    return info.external_attr >> 16


def _kind(info: zipfile.ZipInfo) -> EntryKind:
    name = info.orig_filename
    file_type = stat.S_IFMT(_unix_mode(info))
    if file_type == stat.S_IFLNK:
        if name.endswith("/"):
            raise UnsafeArchive(name, "is a symbolic link named like a directory")
        return "symlink"
    # No type bits at all: a package made on Windows, or by a tool that writes only the
    # permissions; the name (or the DOS attribute) tells a directory.
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchive(name, "is a device, fifo, socket or other special file")
    if file_type == stat.S_IFDIR or name.endswith("/"):
        return "directory"
    if file_type == 0 and info.external_attr & _DOS_DIRECTORY:
        return "directory"
    return "file"


def _mode(info: zipfile.ZipInfo, kind: EntryKind) -> int:
    if kind == "directory":
        return DIRECTORY_MODE
    if kind == "symlink":
        return SYMLINK_MODE
    # Only the executable bit survives: no set-uid, set-gid, sticky or odd permissions.
    return EXECUTABLE_MODE if _unix_mode(info) & 0o111 else FILE_MODE


def _check_format(info: zipfile.ZipInfo) -> None:
    name = info.orig_filename
    if info.flag_bits & _ENCRYPTED_FLAGS:
        raise UnsafeArchive(name, "is encrypted")
    if info.compress_type not in _METHODS:
        raise UnsafeArchive(
            name,
            f"uses compression method {info.compress_type}; only stored and deflate are supported",
        )
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise UnsafeArchive(name, "is stored uncompressed but declares two different sizes")


def _within_ratio(expanded: int, compressed: int, limits: ArchiveLimits) -> bool:
    """Whether `expanded` bytes from `compressed` stay within the ratio (or under its floor)."""
    return expanded <= limits.ratio_floor_bytes or expanded <= limits.max_ratio * compressed


def _check_sizes(planned: _Planned, tree: EntryTree, archive_bytes: int) -> None:
    info, limits = planned.info, tree.limits
    if planned.kind == "directory":
        if info.file_size:
            raise UnsafeArchive(planned.name, "is a directory with content")
        return
    if planned.kind == "symlink":
        if info.file_size > MAX_PATH_BYTES:
            raise UnsafeArchive(planned.name, "is a symbolic link with an oversized target")
        return
    tree.add_bytes(planned.name, info.file_size)
    if not _within_ratio(info.file_size, info.compress_size, limits):
        raise UnsafeArchive(
            planned.name, f"expands more than {limits.max_ratio} times (a zip bomb?)"
        )
    # Entries sharing compressed data (a non-recursive zip bomb) add up past the file itself.
    if not _within_ratio(tree.total, archive_bytes, limits):
        raise UnsafeArchive(
            planned.name, f"the archive expands more than {limits.max_ratio} times its size"
        )


def _encoded_name(info: zipfile.ZipInfo) -> bytes:
    # How zipfile decoded it, reversed: the exact bytes of the central directory.
    encoding = "utf-8" if info.flag_bits & _UTF8_FLAG else "cp437"
    return info.orig_filename.encode(encoding)


def _check_overlaps(archive: zipfile.ZipFile) -> None:
    """Each entry's data must end before the next entry (or the central directory) begins:
    entries that share bytes are how a small zip inflates to petabytes, and zipfile before
    3.12 does not look."""
    infos = sorted(archive.infolist(), key=lambda info: info.header_offset)
    if not infos:
        return  # an empty package: a re-push whose files the server already has
    limits = [info.header_offset for info in infos[1:]] + [archive.start_dir]
    for info, limit in zip(infos, limits, strict=True):
        # At least the fixed header and the name precede the data; the extra field may too.
        start = info.header_offset + _LOCAL_HEADER_BYTES + len(_encoded_name(info))
        if info.header_offset < 0 or start + info.compress_size > limit:
            raise UnsafeArchive(
                info.orig_filename, "overlaps another entry or the central directory"
            )


def _plan(
    archive: zipfile.ZipFile, archive_bytes: int, limits: ArchiveLimits
) -> tuple[list[_Planned], EntryTree]:
    """The first pass, over the central directory only."""
    tree = EntryTree(limits)
    planned: list[_Planned] = []
    for info in archive.infolist():
        name = info.orig_filename
        tree.count(name)
        path = entry_path(name)
        _check_format(info)
        kind = _kind(info)
        tree.add(name, path, kind)
        entry = _Planned(info, path, kind, _mode(info, kind))
        _check_sizes(entry, tree, archive_bytes)
        if path:
            planned.append(entry)
    _check_overlaps(archive)
    return planned, tree


def _data_offset(source: IO[bytes], planned: _Planned) -> int:
    """Where the entry's data begins, after a local header that must agree with the central
    directory: tools that stream a zip read the local headers, and must see the same entry."""
    info = planned.info
    source.seek(info.header_offset)
    header = source.read(_LOCAL_HEADER_BYTES)
    if len(header) != _LOCAL_HEADER_BYTES or not header.startswith(_LOCAL_SIGNATURE):
        raise UnsafeArchive(planned.name, "has no local header where the archive says")
    method = int.from_bytes(header[8:10], "little")
    name_bytes = int.from_bytes(header[26:28], "little")
    extra_bytes = int.from_bytes(header[28:30], "little")
    if method != info.compress_type or source.read(name_bytes) != _encoded_name(info):
        raise UnsafeArchive(planned.name, "has a local header that disagrees with the archive")
    return info.header_offset + _LOCAL_HEADER_BYTES + name_bytes + extra_bytes


def _compressed(source: IO[bytes], planned: _Planned) -> Iterator[bytes]:
    source.seek(_data_offset(source, planned))
    left = planned.info.compress_size
    while left:
        chunk = source.read(min(CHUNK_BYTES, left))
        if not chunk:
            raise UnsafeArchive(planned.name, "is cut short (a truncated archive)")
        left -= len(chunk)
        yield chunk


def _inflate(compressed: Iterator[bytes], entry: str) -> Iterator[bytes]:
    """Raw deflate, at most CHUNK_BYTES of output at a time: the caller stops reading as soon as
    an entry holds more than it declared, so a bomb never reaches memory or disk."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        for chunk in compressed:
            pending = chunk
            while pending and not inflater.eof:
                yield inflater.decompress(pending, CHUNK_BYTES)
                pending = inflater.unconsumed_tail
            if inflater.eof and (pending or inflater.unused_data):
                raise UnsafeArchive(entry, "has data after the end of its compressed stream")
        # Input is exhausted, so what is left is at most one pending match (258 bytes).
        yield inflater.flush()
    except zlib.error as error:
        raise UnsafeArchive(entry, f"cannot be inflated: {error}") from None
    if not inflater.eof:
        raise UnsafeArchive(entry, "is cut short (its compressed stream does not end)")


def _content(source: IO[bytes], planned: _Planned) -> Iterator[bytes]:
    compressed = _compressed(source, planned)
    if planned.info.compress_type == zipfile.ZIP_STORED:
        return compressed
    return _inflate(compressed, planned.name)


def _copy(source: IO[bytes], planned: _Planned, sink: IO[bytes] | None) -> ZipEntryInfo:
    """Inflates one entry into `sink` (or nowhere, to check it), never past its declared size."""
    declared = planned.info.file_size
    digest = hashlib.sha1(usedforsecurity=False)
    crc = size = 0
    for chunk in _content(source, planned):
        size += len(chunk)
        if size > declared:
            raise UnsafeArchive(planned.name, f"holds more than the {declared} bytes it declares")
        digest.update(chunk)
        crc = zlib.crc32(chunk, crc)
        if sink is not None:
            sink.write(chunk)
    if size != declared:
        raise UnsafeArchive(planned.name, f"holds {size} bytes but declares {declared}")
    if crc != planned.info.CRC:
        raise UnsafeArchive(planned.name, "fails its CRC check (a damaged archive)")
    return ZipEntryInfo(planned.path, planned.kind, size, digest.hexdigest(), planned.mode)


def _write_file(source: IO[bytes], planned: _Planned, root: Path) -> ZipEntryInfo:
    target = root / planned.path
    target.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL and O_NOFOLLOW: a second line behind the checks, never overwrite or follow.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(target, flags, 0o600), "wb") as sink:
        info = _copy(source, planned, sink)
        # Exactly 0o644 or 0o755, whatever the umask.
        os.fchmod(sink.fileno(), planned.mode)
    return info


class _Reader:
    """The second pass: inflates, hashes and (given a root) writes every planned entry."""

    def __init__(self, source: IO[bytes], tree: EntryTree, root: Path | None) -> None:
        self.source = source
        # The first pass's tree: links join it as their targets are read.
        self.tree = tree
        self.root = root
        self.links: list[tuple[_Planned, str]] = []

    def read(self, planned: list[_Planned]) -> list[ZipEntryInfo]:
        infos = [self._entry(entry) for entry in planned]
        self.tree.check_link_chains()
        if self.root is not None:
            self._finish(self.root)
        return infos

    def _entry(self, planned: _Planned) -> ZipEntryInfo:
        if planned.kind == "directory":
            if self.root is not None:
                (self.root / planned.path).mkdir(parents=True, exist_ok=True)
            return ZipEntryInfo(planned.path, "directory", 0, None, planned.mode)
        if planned.kind == "symlink":
            return self._link(planned)
        if self.root is None:
            return _copy(self.source, planned, None)
        return _write_file(self.source, planned, self.root)

    def _link(self, planned: _Planned) -> ZipEntryInfo:
        buffer = io.BytesIO()
        info = _copy(self.source, planned, buffer)
        try:
            target = buffer.getvalue().decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafeArchive(planned.name, "is a symbolic link to a non-UTF-8 name") from None
        self.tree.add_link(planned.name, planned.path, target)
        # Made at the very end, once no more files are written.
        self.links.append((planned, target))
        return info

    def _finish(self, root: Path) -> None:
        for entry, _ in self.links:
            (root / entry.path).parent.mkdir(parents=True, exist_ok=True)
        # Every directory, implied ones included, whatever the umask; before any link exists
        # that the walk could follow.
        for directory, _, _ in os.walk(root):
            os.chmod(directory, DIRECTORY_MODE)
        for entry, target in self.links:
            os.symlink(target, root / entry.path)
        # The chains were followed on paper; the disk must agree.
        real_root = os.path.realpath(root)
        for entry, _ in self.links:
            resolved = os.path.realpath(root / entry.path)
            if resolved != real_root and not resolved.startswith(real_root + os.sep):
                raise UnsafeArchive(entry.name, "resolves outside the destination directory")


def _first_pass(source: IO[bytes], limits: ArchiveLimits) -> tuple[list[_Planned], EntryTree]:
    with _open(source) as archive:
        return _plan(archive, os.fstat(source.fileno()).st_size, limits)


def check_zip(path: Path, limits: ArchiveLimits | None = None) -> list[ZipEntryInfo]:
    """Checks every entry of a zip package, inflating it but writing nothing; the entries in
    archive order. Raises UnsafeArchive naming the first offending entry."""
    with path.open("rb") as source:
        planned, tree = _first_pass(source, limits or ArchiveLimits())
        return _Reader(source, tree, None).read(planned)


def _require_empty(destination: Path) -> None:
    # The final rename replaces an empty directory but must never replace anything else.
    if destination.is_symlink() or (destination.exists() and any(destination.iterdir())):
        raise FileExistsError(f"{destination} exists and is not an empty directory")


def safe_extract_zip(
    path: Path, destination: Path, limits: ArchiveLimits | None = None
) -> list[ZipEntryInfo]:
    """Extracts a zip package into `destination`, which must not exist or be an empty
    directory; the entries in archive order. Raises UnsafeArchive naming the first offending
    entry, and then leaves `destination` as it was."""
    _require_empty(destination)
    with path.open("rb") as source:
        planned, tree = _first_pass(source, limits or ArchiveLimits())
        destination.parent.mkdir(parents=True, exist_ok=True)
        # Beside the destination, so that the final rename stays on one filesystem.
        staging = Path(
            tempfile.mkdtemp(
                prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent
            )
        )
        try:
            infos = _Reader(source, tree, staging).read(planned)
            os.rename(staging, destination)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return infos

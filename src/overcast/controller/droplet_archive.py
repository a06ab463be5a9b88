"""Checking an uploaded droplet without trusting it and without extracting anything.

A droplet is a gzipped tarball (see `overcast.testing.droplets`): `app/` and
`staging_info.yml` (detected_buildpack, start_command, process_types). The check reads the
archive once, as a stream: the gzip layer must be complete and intact (CRC and length), every
entry must stay inside the tree (DESIGN.md section 9: no absolute paths, `..`, drive letters,
NUL, links pointing outside, device files), the expanded size and the number of entries are
bounded, and `staging_info.yml` is read (size-capped, safe YAML) from that one member only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import yaml

from overcast.models.errors import Unprocessable

STAGING_INFO = "staging_info.yml"
MAX_STAGING_INFO_BYTES = 64 * 1024
MAX_ENTRIES = 200_000
MAX_PROCESS_TYPES = 100
MAX_BUILDPACKS = 32
MAX_COMMAND_CHARS = 4096
_PROCESS_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_DRIVE = re.compile(r"^[A-Za-z]:")
_BLOCK = 1024 * 1024


class InvalidDroplet(Unprocessable):
    """The uploaded bits are not a usable droplet."""


@dataclass(frozen=True)
class StagedBuildpack:
    name: str
    version: str | None = None
    detect_output: str | None = None


@dataclass(frozen=True)
class StagingInfo:
    detected_buildpack: str | None = None
    start_command: str | None = None
    process_types: dict[str, str] = field(default_factory=dict)
    # The buildpacks that ran, in order (the last one's release gave the process types).
    buildpacks: tuple[StagedBuildpack, ...] = ()


@dataclass(frozen=True)
class DropletReport:
    size: int
    sha256: str
    entries: int
    expanded_bytes: int
    staging_info: StagingInfo | None


class _HashingReader(io.RawIOBase):
    """The compressed bytes as read: hashed and counted on the way."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        count = len(data)
        buffer[:count] = data
        self.digest.update(data)
        self.size += count
        return count


class _Bounded(io.RawIOBase):
    """The expanded bytes: refused past `limit` (over-compressed archives)."""

    def __init__(self, inner: gzip.GzipFile, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        count = len(data)
        self.total += count
        if self.total > self.limit:
            raise InvalidDroplet(
                f"The droplet expands to more than {self.limit} bytes (over-compressed archive)"
            )
        buffer[:count] = data
        return count


def _entry_name(name: str) -> str:
    """The entry's path without leading `./`; refuses names that could leave the tree."""
    if "\x00" in name or "\\" in name or name.startswith("/") or _DRIVE.match(name):
        raise InvalidDroplet(f"The droplet has an unsafe entry name: {name!r}")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidDroplet(f"The droplet has an entry outside its tree: {name!r}")
    return "/".join(parts)


def _check_link(member: tarfile.TarInfo, name: str) -> None:
    target = member.linkname
    if not target or "\x00" in target or target.startswith("/") or _DRIVE.match(target):
        raise InvalidDroplet(f"The droplet has a link pointing outside its tree: {name!r}")
    # A symlink resolves from its own directory; a hard link from the archive's root.
    base = posixpath.dirname(name) if member.issym() else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise InvalidDroplet(f"The droplet has a link pointing outside its tree: {name!r}")


def _check_member(member: tarfile.TarInfo) -> str:
    name = _entry_name(member.name)
    if member.issym() or member.islnk():
        _check_link(member, name)
    elif not (member.isfile() or member.isdir()):
        raise InvalidDroplet(f"The droplet has a special file (device or pipe): {member.name!r}")
    return name


def _text(value: object, what: str, limit: int = MAX_COMMAND_CHARS) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise InvalidDroplet(f"{STAGING_INFO}: {what} must be a string of at most {limit} chars")
    return value


def parse_staging_info(data: bytes) -> StagingInfo:
    try:
        loaded = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        raise InvalidDroplet(f"{STAGING_INFO} is not valid YAML") from None
    if loaded is None:
        return StagingInfo()
    if not isinstance(loaded, dict):
        raise InvalidDroplet(f"{STAGING_INFO} must hold a mapping")
    buildpack = _text(loaded.get("detected_buildpack"), "detected_buildpack", 255)
    start_command = _text(loaded.get("start_command"), "start_command")
    raw_types = loaded.get("process_types")
    if raw_types is None:
        raw_types = {}
    if not isinstance(raw_types, dict) or len(raw_types) > MAX_PROCESS_TYPES:
        raise InvalidDroplet(
            f"{STAGING_INFO}: process_types must be a mapping of at most {MAX_PROCESS_TYPES} types"
        )
    process_types: dict[str, str] = {}
    for kind, command in raw_types.items():
        if not isinstance(kind, str) or not _PROCESS_TYPE.match(kind):
            raise InvalidDroplet(f"{STAGING_INFO}: invalid process type {kind!r}")
        text = _text(command, f"the command of process type {kind!r}")
        if text:
            process_types[kind] = text
    if "web" not in process_types and start_command:
        process_types["web"] = start_command
    return StagingInfo(
        detected_buildpack=buildpack or None,
        start_command=start_command or None,
        process_types=process_types,
        buildpacks=_buildpacks(loaded.get("buildpacks")),
    )


def _buildpacks(raw: object) -> tuple[StagedBuildpack, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_BUILDPACKS:
        raise InvalidDroplet(
            f"{STAGING_INFO}: buildpacks must be a list of at most {MAX_BUILDPACKS}"
        )
    used: list[StagedBuildpack] = []
    for item in raw:
        if not isinstance(item, dict):
            raise InvalidDroplet(f"{STAGING_INFO}: every buildpack must be a mapping")
        name = _text(item.get("name"), "a buildpack name", 255)
        if not name:
            raise InvalidDroplet(f"{STAGING_INFO}: every buildpack needs a name")
        used.append(
            StagedBuildpack(
                name=name,
                version=_text(item.get("version"), "a buildpack version", 255),
                detect_output=_text(item.get("detect_output"), "a detect output", 4096),
            )
        )
    return tuple(used)


def _read_staging_info(archive: tarfile.TarFile, member: tarfile.TarInfo) -> StagingInfo:
    if not member.isfile():
        raise InvalidDroplet(f"{STAGING_INFO} must be a regular file")
    if member.size > MAX_STAGING_INFO_BYTES:
        raise InvalidDroplet(f"{STAGING_INFO} is larger than {MAX_STAGING_INFO_BYTES} bytes")
    extracted = archive.extractfile(member)
    if extracted is None:
        raise InvalidDroplet(f"{STAGING_INFO} cannot be read")
    with extracted:
        return parse_staging_info(extracted.read(MAX_STAGING_INFO_BYTES + 1))


def inspect_droplet(handle: BinaryIO, *, max_expanded_bytes: int) -> DropletReport:
    """Check the droplet tarball read from `handle` (blocking: run it in a thread)."""
    raw = _HashingReader(handle)
    unpacked = gzip.GzipFile(fileobj=raw, mode="rb")
    bounded = _Bounded(unpacked, max_expanded_bytes)
    info: StagingInfo | None = None
    entries = 0
    try:
        with tarfile.open(fileobj=bounded, mode="r|") as archive:
            for member in archive:
                entries += 1
                if entries > MAX_ENTRIES:
                    raise InvalidDroplet(f"The droplet has more than {MAX_ENTRIES} entries")
                name = _check_member(member)
                if name == STAGING_INFO:
                    info = _read_staging_info(archive, member)
        # The rest of the stream (tar padding, the gzip trailer) must be intact too.
        while bounded.read(_BLOCK):
            pass
        while raw.read(_BLOCK):
            pass
    except InvalidDroplet:
        raise
    except EOFError:
        raise InvalidDroplet("The droplet archive is truncated") from None
    except gzip.BadGzipFile as error:
        if str(error).startswith("Not a gzipped file"):
            raise InvalidDroplet("The droplet is not a gzipped tarball") from None
        # CRC or length mismatch, unknown compression method.
        raise InvalidDroplet("The droplet archive is corrupt (gzip check failed)") from None
    except zlib.error:
        raise InvalidDroplet("The droplet archive is corrupt (bad compressed data)") from None
    except tarfile.TarError:
        raise InvalidDroplet("The droplet is not a valid tar archive") from None
    if raw.size == 0:
        raise InvalidDroplet("The droplet is empty")
    return DropletReport(
        size=raw.size,
        sha256=raw.digest.hexdigest(),
        entries=entries,
        expanded_bytes=bounded.total,
        staging_info=info,
    )

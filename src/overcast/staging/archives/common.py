"""The rules every archive format shares (DESIGN.md section 9): what an entry may be called, what
it may be, where its links may lead, and how much an archive may hold.

Both the tar and the zip readers feed their entries through `EntryTree`, so a rule added here
holds for both."""

from __future__ import annotations

import posixpath
import re
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_BYTES = 4 * 1024 * 1024 * 1024
DEFAULT_MAX_FILE_BYTES = 1024 * 1024 * 1024
DEFAULT_MAX_RATIO = 100
DEFAULT_RATIO_FLOOR_BYTES = 1024 * 1024

# Linux's NAME_MAX and PATH_MAX: longer names would fail at open() with an OSError halfway
# through extraction instead of being refused up front.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4095
# The kernel's MAXSYMLINKS: a chain longer than this is a loop for every practical purpose.
MAX_LINK_HOPS = 40

EntryKind = Literal["file", "directory", "symlink"]

# "C:" only means something on Windows, but a package made there and unpacked by a Windows
# client must not land on another drive either.
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeArchive(ValueError):
    """An archive that is malformed, hostile or over a limit.

    `entry` is the archive's own name for the offending entry (None when the archive as a whole
    is at fault); `reason` says what is wrong with it."""

    def __init__(self, entry: str | None, reason: str) -> None:
        # Both go to args so that the exception survives pickling (process pools).
        super().__init__(entry, reason)
        self.entry = entry
        self.reason = reason

    def __str__(self) -> str:
        if self.entry is None:
            return self.reason
        return f"entry {quote(self.entry)}: {self.reason}"


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = DEFAULT_MAX_ENTRIES
    # Sum of the sizes of the regular files.
    max_bytes: int = DEFAULT_MAX_BYTES
    # Size of any one regular file.
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    # Uncompressed / compressed, for one entry and for the whole archive (zip only: a tar's
    # compression covers the stream, not its entries) ...
    max_ratio: int = DEFAULT_MAX_RATIO
    # ... but only past this many uncompressed bytes: a small file of zeros is not a bomb.
    ratio_floor_bytes: int = DEFAULT_RATIO_FLOOR_BYTES


def quote(name: str) -> str:
    """`name` in double quotes, with anything unprintable escaped: entry names end up in logs
    and API errors, and must not smuggle newlines or terminal controls into them."""
    return '"' + "".join(_escape(char) for char in name) + '"'


def _escape(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if char.isprintable():
        return char
    return char.encode("unicode_escape").decode("ascii")


# C0, DEL and C1. Lone surrogates (undecodable bytes of a tar name) are not controls. A regular
# expression, not a loop over characters: every name of every droplet start goes through it.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _check_characters(entry: str, text: str, what: str) -> None:
    if _CONTROL.search(text):
        raise UnsafeArchive(entry, f"{what} contains a NUL or other control character")
    if "\\" in text:
        # A Windows separator: "..\\x" would climb out on a Windows client.
        raise UnsafeArchive(entry, f"{what} contains a backslash")
    if text.startswith("/"):
        raise UnsafeArchive(entry, f"{what} is an absolute path")
    if _DRIVE.match(text):
        raise UnsafeArchive(entry, f"{what} starts with a Windows drive letter")


def _byte_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def entry_path(name: str) -> str:
    """The entry's path relative to the destination, normalised ("a/./b/" is "a/b", and "./" is
    "", the destination itself); UnsafeArchive when the name is one we refuse."""
    if not name:
        raise UnsafeArchive(name, "has an empty name")
    _check_characters(name, name, "name")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(name, "leaves the destination directory (..)")
    path = "/".join(parts)
    # "./C:/x" hides the drive letter behind a no-op component.
    _check_characters(name, path, "name")
    if any(_byte_length(part) > MAX_NAME_BYTES for part in parts):
        raise UnsafeArchive(name, f"has a path component longer than {MAX_NAME_BYTES} bytes")
    if _byte_length(path) > MAX_PATH_BYTES:
        raise UnsafeArchive(name, f"has a path longer than {MAX_PATH_BYTES} bytes")
    return path


def _parents(path: str) -> Iterator[str]:
    parts = path.split("/")
    for depth in range(1, len(parts)):
        yield "/".join(parts[:depth])


def _lexically_inside(relative: str) -> bool:
    normal = posixpath.normpath(relative)
    return normal != ".." and not normal.startswith("../")


def _chain_problem(link: str, links: Mapping[str, str]) -> str | None:
    """Follows `link` through the archive's other links as the kernel would, without touching
    the disk; why it is refused, or None when it stays inside.

    Each link may stay inside on its own while a chain of them climbs out: "x" -> "../sibling"
    and "y" -> "x/../../.." (the ".." after "x" applies to where "x" leads)."""
    resolved = link.split("/")[:-1]
    pending = deque(links[link].split("/"))
    hops = 1
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return "is a symbolic link that resolves outside the destination directory"
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get("/".join(resolved))
        if target is not None:
            hops += 1
            if hops > MAX_LINK_HOPS:
                return "is a symbolic link in a loop or a chain that is too long"
            resolved.pop()
            pending.extendleft(reversed(target.split("/")))
    return None


class EntryTree:
    """The entries of one archive, checked in archive order: how many, how large, and what kind
    of thing each path is, so that no entry can replace another or be written through a link
    or into a file."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.entries = 0
        self.total = 0
        self.kinds: dict[str, EntryKind] = {}
        # Directories that exist because something inside them does.
        self.implied: set[str] = set()
        self.links: dict[str, str] = {}
        # The archive's own name for each link, for errors found after all of them are known.
        self.link_entries: dict[str, str] = {}

    def count(self, entry: str) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise UnsafeArchive(
                entry, f"the archive has more than {self.limits.max_entries} entries"
            )

    def add(self, entry: str, path: str, kind: EntryKind) -> None:
        """Records the entry at `path` ("" only for a directory: the destination itself)."""
        if not path:
            if kind == "directory":
                return
            raise UnsafeArchive(entry, "names the destination directory itself")
        if path in self.kinds:
            # A second entry of one name could re-point a link after it was checked.
            raise UnsafeArchive(entry, f"appears twice (as {quote(path)})")
        if kind != "directory" and path in self.implied:
            raise UnsafeArchive(entry, f"is a {kind}, but other entries are inside it")
        for parent in _parents(path):
            above = self.kinds.get(parent)
            if above == "symlink":
                raise UnsafeArchive(entry, "would be written through a symbolic link")
            if above == "file":
                raise UnsafeArchive(entry, f"would be written inside the file {quote(parent)}")
            self.implied.add(parent)
        self.kinds[path] = kind

    def add_bytes(self, entry: str, size: int) -> None:
        if size > self.limits.max_file_bytes:
            raise UnsafeArchive(entry, f"is larger than {self.limits.max_file_bytes} bytes")
        self.total += size
        if self.total > self.limits.max_bytes:
            raise UnsafeArchive(
                entry, f"the archive's files are larger than {self.limits.max_bytes} bytes"
            )

    def add_link(self, entry: str, path: str, target: str) -> None:
        """Records a symbolic link once its target is known; the target must stay inside on
        its own (the chain through other links is checked by `check_link_chains`)."""
        if not target:
            raise UnsafeArchive(entry, "is a symbolic link with an empty target")
        _check_characters(entry, target, "link target")
        if _byte_length(target) > MAX_PATH_BYTES:
            raise UnsafeArchive(entry, f"has a link target longer than {MAX_PATH_BYTES} bytes")
        if not _lexically_inside(posixpath.join(posixpath.dirname(path), target)):
            raise UnsafeArchive(
                entry,
                f"is a symbolic link pointing outside the destination directory ({quote(target)})",
            )
        self.links[path] = target
        self.link_entries[path] = entry

    def check_link_chains(self) -> None:
        """Once every link of the archive is known."""
        for link in sorted(self.links):
            problem = _chain_problem(link, self.links)
            if problem is not None:
                raise UnsafeArchive(self.link_entries[link], problem)

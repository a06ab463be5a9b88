"""An app directory as the files a push sends: walked (with `.cfignore`), hashed for
POST /v3/resource_matches, and zipped for POST /v3/packages/:guid/upload.

Pure helpers, no HTTP: `collect(root)` lists the files, `split_matched(files, matched)` tells
the ones the server already holds from those to upload, and `write_zip(root, files, path)`
writes the zip of the latter.

What is left out: the directories `.git`, `__pycache__`, `node_modules` and `.venv` (and the
`.cfignore` file itself) wherever they are, and whatever the root's `.cfignore` names, read as
gitignore patterns (`*`, `?`, `[abc]`, `**`, a trailing `/` for directories only, a leading or
inner `/` anchoring the pattern to the root, `!` re-including, `#` comments); a later pattern
wins over an earlier one, and nothing inside an ignored directory can be re-included. A
`.cfignore` pattern such as `!node_modules/` brings a default one back.

Symbolic links are sent as links (never followed) when they point inside the directory, and
refused otherwise; sockets, fifos and devices are skipped."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from overcast.client.errors import ClientError
from overcast.client.resources import MatchedResource

IGNORE_FILE = ".cfignore"
DEFAULT_IGNORES = (".git", "__pycache__", "node_modules", ".venv", f"/{IGNORE_FILE}")
FILE_MODE = "644"
EXECUTABLE_MODE = "755"
LINK_MODE = "777"
CHUNK_BYTES = 1024 * 1024
# Zip timestamps start in 1980.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_UNIX = 3


class BitsError(ClientError, ValueError):
    """The directory cannot be pushed as it is (a link leading outside it, an unreadable
    `.cfignore`, ...); the message says which entry and why."""


@dataclass(frozen=True)
class AppFile:
    """One file (or symbolic link) of the app. `path` is relative and "/"-separated; for a
    link, `size` and `sha1` are those of its target text, as the server counts them."""

    path: str
    size: int
    sha1: str
    mode: str
    link_target: str | None = None

    @property
    def is_link(self) -> bool:
        return self.link_target is not None

    @property
    def key(self) -> tuple[str, int]:
        return (self.sha1, self.size)

    def resource(self) -> MatchedResource:
        """The entry of POST /v3/resource_matches (and of an upload's `resources`)."""
        return {
            "path": self.path,
            "size_in_bytes": self.size,
            "checksum": {"value": self.sha1},
            "mode": self.mode,
        }


# --- ignore rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    negated: bool
    directories_only: bool


def _class_end(pattern: str, start: int) -> int:
    """The index of the `]` closing the class that opens at `start`, or -1."""
    index = start + 1
    if index < len(pattern) and pattern[index] in "!^":
        index += 1
    if index < len(pattern) and pattern[index] == "]":
        index += 1
    while index < len(pattern) and pattern[index] != "]":
        index += 1
    return index if index < len(pattern) else -1


def _translate(body: str) -> str:
    """A gitignore pattern (anchoring and trailing `/` already taken off) as a regex."""
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if body.startswith("**", index):
            at_start = index == 0 or body[index - 1] == "/"
            after = index + 2
            if at_start and after == len(body):
                out.append(".*")  # `a/**`: everything inside a
                index = after
                continue
            if at_start and body.startswith("/", after):
                out.append("(?:.*/)?")  # `**/a`, `a/**/b`: zero or more directories
                index = after + 1
                continue
            out.append("[^/]*")  # any other `**` is a plain `*`
            index = after
        elif char == "*":
            out.append("[^/]*")
            index += 1
        elif char == "?":
            out.append("[^/]")
            index += 1
        elif char == "[":
            end = _class_end(body, index)
            if end < 0:
                out.append(re.escape(char))
                index += 1
                continue
            inner = body[index + 1 : end]
            negate = inner[:1] in ("!", "^")
            if negate:
                inner = inner[1:]
            members = "".join("\\" + c if c in "\\[]^&~|" else c for c in inner)
            out.append(f"(?![/])[{'^' if negate else ''}{members}]")
            index = end + 1
        elif char == "\\" and index + 1 < len(body):
            out.append(re.escape(body[index + 1]))
            index += 2
        else:
            out.append(re.escape(char))
            index += 1
    return "".join(out)


def _compile(line: str) -> _Pattern | None:
    text = line.rstrip("\n").rstrip("\r")
    # Trailing spaces are dropped unless escaped with a backslash.
    stripped = text.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(text):
        stripped += " "
    text = stripped
    if not text or text.startswith("#"):
        return None
    negated = text.startswith("!")
    if negated or text.startswith(("\\!", "\\#")):
        text = text[1:]
    directories_only = text.endswith("/")
    text = text.rstrip("/")
    if not text:
        return None
    anchored = "/" in text
    text = text.lstrip("/")
    if not text:
        return None
    regex = _translate(text)
    if not anchored:
        regex = "(?:.*/)?" + regex
    return _Pattern(re.compile(regex, re.DOTALL), negated, directories_only)


class IgnoreRules:
    """Gitignore-style patterns, matched against paths relative to the root."""

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self.patterns = [pattern for pattern in map(_compile, lines) if pattern is not None]

    @classmethod
    def for_directory(cls, root: Path) -> IgnoreRules:
        """The default patterns, then those of `root/.cfignore` (if there is one)."""
        lines = list(DEFAULT_IGNORES)
        ignore_file = root / IGNORE_FILE
        if ignore_file.is_file():
            try:
                lines += ignore_file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as error:
                raise BitsError(f"cannot read {ignore_file}: {error}") from None
        return cls(lines)

    def ignored(self, path: str, *, is_dir: bool) -> bool:
        """Whether `path` itself is ignored (its directories are checked by the walk)."""
        result = False
        for pattern in self.patterns:
            if pattern.directories_only and not is_dir:
                continue
            if pattern.regex.fullmatch(path):
                result = not pattern.negated
        return result


# --- walking ------------------------------------------------------------------------------


def _sha1_of_file(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)  # CF's resource matching uses sha1
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _sha1_of_text(text: str) -> str:
    return hashlib.sha1(os.fsencode(text), usedforsecurity=False).hexdigest()


def _inside(relative: str) -> bool:
    normal = posixpath.normpath(relative)
    return normal not in ("..",) and not normal.startswith("../") and not normal.startswith("/")


def _link_target(root: Path, real_root: str, path: str, full: Path) -> str:
    """The link's target as a relative path inside the tree; BitsError when it leads out."""
    raw = os.readlink(full)
    target = raw.replace(os.sep, "/")
    parent = posixpath.dirname(path)
    if posixpath.isabs(target):
        # An absolute link into the tree still works once unpacked elsewhere as a relative one.
        for base in (str(root), real_root):
            inner = os.path.relpath(raw, base).replace(os.sep, "/")
            if _inside(inner):
                target = posixpath.relpath(inner, parent or ".")
                break
        else:
            raise BitsError(f"{path} is a symbolic link to {raw}, outside the app directory")
    if not _inside(posixpath.join(parent, target)):
        raise BitsError(f"{path} is a symbolic link to {raw}, outside the app directory")
    # Through other links it may still lead out ("x -> ../..", "y -> x/.."): the real path
    # tells, when there is one.
    resolved = os.path.realpath(full)
    if os.path.lexists(resolved) and not _inside(os.path.relpath(resolved, real_root)):
        raise BitsError(
            f"{path} is a symbolic link to {raw}, which leads outside the app directory"
        )
    return target


def _walk(root: Path, real_root: str, rules: IgnoreRules, relative: str) -> Iterator[AppFile]:
    directory = root / relative if relative else root
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as error:
        raise BitsError(f"cannot list {directory}: {error.strerror or error}") from None
    for entry in entries:
        path = f"{relative}/{entry.name}" if relative else entry.name
        full = Path(entry.path)
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError as error:
            raise BitsError(f"cannot read {full}: {error.strerror or error}") from None
        if stat.S_ISLNK(info.st_mode):
            # A link to a directory is ignored as that directory would be (`.venv -> ...`).
            if rules.ignored(path, is_dir=os.path.isdir(full)):
                continue
            target = _link_target(root, real_root, path, full)
            size = len(os.fsencode(target))
            yield AppFile(path, size, _sha1_of_text(target), LINK_MODE, link_target=target)
        elif stat.S_ISDIR(info.st_mode):
            if not rules.ignored(path, is_dir=True):
                yield from _walk(root, real_root, rules, path)
        elif stat.S_ISREG(info.st_mode):
            if rules.ignored(path, is_dir=False):
                continue
            try:
                sha1 = _sha1_of_file(full)
            except OSError as error:
                raise BitsError(f"cannot read {full}: {error.strerror or error}") from None
            mode = EXECUTABLE_MODE if info.st_mode & 0o111 else FILE_MODE
            yield AppFile(path, info.st_size, sha1, mode)
        # Sockets, fifos and devices cannot be part of an app.


def collect(root: str | os.PathLike[str]) -> list[AppFile]:
    """Every file and link of the directory that a push sends, in path order."""
    base = Path(root).absolute()
    if not base.is_dir():
        raise BitsError(f"{root} is not a directory")
    rules = IgnoreRules.for_directory(base)
    return list(_walk(base, os.path.realpath(base), rules, ""))


# --- matching and zipping -----------------------------------------------------------------


def split_matched(
    files: Sequence[AppFile], matched: Iterable[MatchedResource]
) -> tuple[list[AppFile], list[AppFile]]:
    """(unchanged, to upload): the regular files whose content (sha1 and size) the server
    says it holds, and everything else (links are always uploaded: they are not in the
    server's file store)."""
    known = {(item["checksum"]["value"].lower(), item["size_in_bytes"]) for item in matched}
    unchanged = [file for file in files if not file.is_link and file.key in known]
    held = {file.path for file in unchanged}
    return unchanged, [file for file in files if file.path not in held]


def _date_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    moment = time.localtime(mtime)
    stamp = (
        moment.tm_year,
        moment.tm_mon,
        moment.tm_mday,
        moment.tm_hour,
        moment.tm_min,
        moment.tm_sec,
    )
    return max(stamp, _ZIP_EPOCH)


def write_zip(
    root: str | os.PathLike[str],
    files: Iterable[AppFile],
    destination: str | os.PathLike[str],
    *,
    matched: Iterable[MatchedResource] = (),
) -> list[AppFile]:
    """Zip the `files` (read from `root`) that are not in `matched` (see split_matched) into
    `destination`, with their unix modes, links as links; returns the files it holds. The zip
    of no files is a valid empty zip: a re-push whose files the server all holds."""
    base = Path(root)
    _, wanted = split_matched(list(files), matched)
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in wanted:
            if file.link_target is not None:
                info = zipfile.ZipInfo(file.path, _ZIP_EPOCH)
                info.create_system = _UNIX
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                info.compress_type = zipfile.ZIP_STORED
                archive.writestr(info, os.fsencode(file.link_target))
            else:
                _add_file(archive, base / file.path, file)
    return wanted


def _add_file(archive: zipfile.ZipFile, full: Path, file: AppFile) -> None:
    try:
        with open(full, "rb") as source:
            status = os.fstat(source.fileno())
            info = zipfile.ZipInfo(file.path, _date_time(status.st_mtime))
            info.create_system = _UNIX
            info.external_attr = (stat.S_IFREG | int(file.mode, 8)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = status.st_size
            with archive.open(info, "w") as target:
                while chunk := source.read(CHUNK_BYTES):
                    target.write(chunk)
    except OSError as error:
        raise BitsError(f"cannot read {full}: {error.strerror or error}") from None

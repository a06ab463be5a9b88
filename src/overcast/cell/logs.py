"""Reading an instance's stdout/stderr files line by line.

The files are opened for appending by the instance, so the cell can restart and resume at the
saved offset; a file over `truncate_over` bytes is emptied once fully read (the instance's
O_APPEND writes then continue at its start)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

MAX_LINE_BYTES = 64 * 1024
TRUNCATE_OVER_BYTES = 10 * 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024


class LineSplitter:
    """Bytes in, complete lines out. A line longer than `max_line` bytes is cut into pieces
    (a log line is bounded; an app printing a megabyte without a newline is not)."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_line = max_line
        self._pending = b""

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held back."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[str]:
        buffer = self._pending + data
        lines: list[str] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            lines.extend(self._cut(buffer[start:end]))
            start = end + 1
        rest = buffer[start:]
        while len(rest) >= self.max_line:
            lines.append(_decode(rest[: self.max_line]))
            rest = rest[self.max_line :]
        self._pending = rest
        return lines

    def flush(self) -> list[str]:
        """The unfinished line, if any (the writer is gone)."""
        rest, self._pending = self._pending, b""
        return [_decode(rest)] if rest else []

    def _cut(self, line: bytes) -> list[str]:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) <= self.max_line:
            return [_decode(line)]
        return [_decode(line[i : i + self.max_line]) for i in range(0, len(line), self.max_line)]


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class FileTail:
    """Follows one log file from an offset."""

    def __init__(
        self,
        path: Path,
        offset: int = 0,
        *,
        max_line: int = MAX_LINE_BYTES,
        truncate_over: int = TRUNCATE_OVER_BYTES,
    ) -> None:
        self.path = path
        self._offset = offset
        self._splitter = LineSplitter(max_line)
        self._truncate_over = truncate_over

    @property
    def offset(self) -> int:
        """Where a later reader resumes: the start of the unfinished line."""
        return max(0, self._offset - self._splitter.pending)

    def read(self, limit: int = READ_CHUNK_BYTES) -> list[str]:
        """Complete lines written since the last read (at most `limit` bytes' worth)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self._offset:
            # Emptied by someone else: start over.
            self._offset = 0
        if size == self._offset:
            return []
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read(limit)
        self._offset += len(data)
        lines = self._splitter.feed(data)
        self._maybe_truncate()
        return lines

    def finish(self) -> list[str]:
        """Everything left, the unfinished line included (the writer has exited)."""
        lines: list[str] = []
        while True:
            before = self._offset
            lines.extend(self.read())
            if self._offset == before:
                return lines + self._splitter.flush()

    def _maybe_truncate(self) -> None:
        if self._offset < self._truncate_over or self._splitter.pending:
            return
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_size == self._offset:
                os.truncate(self.path, 0)
                self._offset = 0

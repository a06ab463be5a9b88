"""Log line splitting and file tailing."""

from __future__ import annotations

from pathlib import Path

from overcast.cell.logs import FileTail, LineSplitter


def test_partial_lines_wait_for_their_end() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"hel") == []
    assert splitter.feed(b"lo\nwor") == ["hello"]
    assert splitter.pending == 3
    assert splitter.feed(b"ld\r\n\n") == ["world", ""]
    assert splitter.flush() == []


def test_long_lines_are_cut() -> None:
    splitter = LineSplitter(max_line=4)
    assert splitter.feed(b"abcdefghij\nxy") == ["abcd", "efgh", "ij"]
    assert splitter.feed(b"zzzzz") == ["xyzz"]
    assert splitter.flush() == ["zzz"]


def test_the_64k_cap() -> None:
    splitter = LineSplitter()
    lines = splitter.feed(b"a" * (64 * 1024 + 10) + b"\n")
    assert [len(line) for line in lines] == [64 * 1024, 10]


def test_invalid_utf8_is_replaced() -> None:
    assert LineSplitter().feed(b"caf\xc3\xa9 \xff\n") == ["caf\u00e9 \ufffd"]


def test_tail_resumes_at_the_unfinished_line(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    path.write_bytes(b"one\ntw")
    tail = FileTail(path)
    assert tail.read() == ["one"]
    assert tail.offset == 4
    resumed = FileTail(path, tail.offset)
    with path.open("ab") as handle:
        handle.write(b"o\nthree")
    assert resumed.read() == ["two"]
    assert resumed.finish() == ["three"]


def test_tail_truncates_a_big_fully_read_file(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    path.write_bytes(b"x" * 30 + b"\n")
    tail = FileTail(path, truncate_over=20)
    assert tail.read() == ["x" * 30]
    assert path.stat().st_size == 0
    assert tail.offset == 0
    with path.open("ab") as handle:
        handle.write(b"after\n")
    assert tail.read() == ["after"]


def test_tail_starts_over_when_the_file_shrank(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    path.write_bytes(b"first line\n")
    tail = FileTail(path)
    tail.read()
    path.write_bytes(b"new\n")
    assert tail.read() == ["new"]


def test_missing_file_has_no_lines(tmp_path: Path) -> None:
    tail = FileTail(tmp_path / "none.log")
    assert tail.read() == []
    assert tail.finish() == []

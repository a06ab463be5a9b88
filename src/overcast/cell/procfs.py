"""What the cell reads from /proc: process identity (start time tells a reused pid apart),
the processes of an instance's session, their CPU time and memory, the machine's memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    utime: int
    stime: int
    # Clock ticks after boot: with the pid, identifies one process for its whole life.
    start_time: int
    rss_pages: int

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")


def parse_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line. The command name may hold spaces and parentheses, so the
    fields are counted from the last ')'."""
    pid_part, _, rest = text.partition(" (")
    fields = rest[rest.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state.
    return ProcStat(
        pid=int(pid_part),
        state=fields[0],
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        start_time=int(fields[19]),
        rss_pages=int(fields[21]),
    )


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    try:
        return parse_stat((proc / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def session_members(session: int, proc: Path = PROC) -> list[ProcStat]:
    """The live (not zombie) processes of a session: an instance and everything it forked."""
    members = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        stat = read_stat(int(entry), proc)
        if stat is not None and stat.session == session and not stat.zombie:
            members.append(stat)
    return members


def uptime_seconds(proc: Path = PROC) -> float:
    try:
        return float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def total_memory_bytes(proc: Path = PROC) -> int:
    """MemTotal of /proc/meminfo (0 when unreadable)."""
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0

"""Exit descriptions and /proc parsing."""

from __future__ import annotations

import os

from overcast.cell.procfs import parse_stat, read_stat
from overcast.cell.runtime import ExitStatus


def test_exit_descriptions() -> None:
    assert ExitStatus(code=1).describe() == "exited with status 1"
    assert ExitStatus(code=1).status == 1
    assert "not found" in ExitStatus(code=127).describe()
    killed = ExitStatus(signal=9)
    assert killed.status == 137
    assert killed.describe() == "killed by signal 9 (SIGKILL)"
    assert killed.summary() == "Exit status 137 (killed by signal 9)"
    assert ExitStatus(code=137).describe() == "exited with status 137 (killed by signal 9)"
    assert ExitStatus().status is None
    assert "not watching" in ExitStatus().describe()


def test_parse_stat_with_odd_command_names() -> None:
    fields = ["S", "1", "4242", "4242"] + ["0"] * 7 + ["7", "3"] + ["0"] * 6 + ["555", "0", "12"]
    stat = parse_stat(f"4242 (my (odd) app) {' '.join(fields)} 0 0\n")
    assert (stat.pid, stat.state, stat.session, stat.pgrp) == (4242, "S", 4242, 4242)
    assert (stat.utime, stat.stime, stat.start_time, stat.rss_pages) == (7, 3, 555, 12)


def test_read_own_stat() -> None:
    stat = read_stat(os.getpid())
    assert stat is not None and stat.pid == os.getpid() and not stat.zombie
    assert read_stat(2**30) is None

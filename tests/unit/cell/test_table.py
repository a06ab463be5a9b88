"""The persisted instance table: round trip, atomic writes, seq and tombstones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from overcast.cell.table import (
    MAX_TOMBSTONES,
    CellTable,
    InstanceRecord,
    TableError,
    load_cell_id,
    read_table,
    write_table,
)
from overcast.models.instances import CRASH_RESET_SECONDS, CellState, InstanceState
from tests.unit.cell.test_decisions import spec


def test_round_trip(tmp_path: Path) -> None:
    table = CellTable(cell_id="c1", state=CellState.DISABLED)
    record = InstanceRecord(
        spec=spec(environment={"A": "b"}),
        state=InstanceState.RUNNING,
        since=12.5,
        port=61000,
        pid=4242,
        pid_start_time=99,
        log_offsets={"stdout": 10, "stderr": 0},
    )
    table.add(record)
    table.forget("old")
    path = tmp_path / "instances.json"
    write_table(path, table)
    loaded = read_table(path)
    assert loaded == table
    assert loaded is not None and loaded.instances["i-1"].handle is not None


def test_write_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    write_table(path, CellTable(cell_id="c1", seq=1))
    inode = path.stat().st_ino
    write_table(path, CellTable(cell_id="c1", seq=2))
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert sorted(os.listdir(tmp_path)) == ["instances.json"]  # no temporary left
    loaded = read_table(path)
    assert loaded is not None and loaded.seq == 2


def test_missing_and_corrupt_tables(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    assert read_table(path) is None
    path.write_text("{not json")
    with pytest.raises(TableError):
        read_table(path)


def test_seq_counts_every_change_and_stamps_the_record() -> None:
    table = CellTable(cell_id="c1")
    first = InstanceRecord(spec=spec("i-1"), state=InstanceState.CLAIMED, since=0)
    second = InstanceRecord(spec=spec("i-2"), state=InstanceState.CLAIMED, since=0)
    table.add(first)
    table.add(second)
    assert (first.seq, second.seq, table.seq) == (1, 2, 2)
    table.stamp(first)
    assert (first.seq, table.seq) == (3, 3)
    table.forget("i-1")
    assert table.seq == 4
    assert "i-1" not in table.instances
    assert table.is_tombstoned("i-1")


def test_tombstones_keep_the_newest() -> None:
    table = CellTable(cell_id="c1")
    for number in range(MAX_TOMBSTONES + 5):
        table.forget(f"i-{number}")
    assert len(table.tombstones) == MAX_TOMBSTONES
    assert not table.is_tombstoned("i-0")
    assert table.is_tombstoned(f"i-{MAX_TOMBSTONES + 4}")
    table.forget("i-10")  # again: moves to the newest end, no duplicate
    assert table.tombstones[-1] == "i-10"
    assert table.tombstones.count("i-10") == 1


def test_cell_id_is_generated_once(tmp_path: Path) -> None:
    generated = load_cell_id(tmp_path)
    assert generated.startswith("cell-")
    assert load_cell_id(tmp_path) == generated
    assert load_cell_id(tmp_path, "configured") == "configured"


def test_the_table_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    # It holds every instance's spec, environment variables (secrets) included.
    path = tmp_path / "instances.json"
    write_table(path, CellTable(cell_id="c1", seq=1))
    assert path.stat().st_mode & 0o777 == 0o600


def test_crash_count_goes_on_from_the_carried_count() -> None:
    # A replacement starts with the count of the crash record it replaced (spec.crash_count).
    record = InstanceRecord(
        spec=spec(crash_count=4), state=InstanceState.RUNNING, since=100.0, crash_count=4
    )
    record.running_since = 100.0
    assert record.crash_count_after_crash(100.0 + CRASH_RESET_SECONDS - 1) == 5
    never_ran = record.model_copy(update={"running_since": None})
    assert never_ran.crash_count_after_crash(10_000.0) == 5


def test_crash_count_starts_again_after_a_healthy_run() -> None:
    record = InstanceRecord(
        spec=spec(crash_count=9), state=InstanceState.RUNNING, since=100.0, crash_count=9
    )
    record.running_since = 100.0
    assert record.crash_count_after_crash(100.0 + CRASH_RESET_SECONDS) == 1

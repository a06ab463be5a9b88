"""Ports for test cells, so that cells alive at once never hand out the same one."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

# Test cells hand out ports in blocks of 200 below Linux's ephemeral range (32768-60999), so an
# instance never finds its port taken by an outgoing connection, and blocks go round in turn, so
# two cells of one platform (or of two platforms alive at once) never share one. The random start
# keeps concurrent test processes apart most of the time. Tests that start a cell or controller
# process take its ports from here too; 32600-32767 are left to bench/cell_loss.py.
_CELL_PORT_BLOCKS = list(range(20000, 32600, 200))
CELL_PORT_BLOCK_SIZE = 200


def _cycle(blocks: list[int]) -> Iterator[int]:
    first = random.randrange(len(blocks))
    return itertools.cycle(blocks[first:] + blocks[:first])


_CELL_PORT_BASES = _cycle(_CELL_PORT_BLOCKS)


def share_port_blocks(worker: int, workers: int) -> None:
    """Test processes running side by side (pytest-xdist workers) each take every `workers`th
    block, so their cells never hand out the same port."""
    global _CELL_PORT_BASES
    _CELL_PORT_BASES = _cycle(_CELL_PORT_BLOCKS[worker::workers])


def next_cell_port_range() -> tuple[int, int]:
    """The first and last port of the next block of CELL_PORT_BLOCK_SIZE: for a test cell's
    instances, or for a process a test restarts on the same port."""
    first = next(_CELL_PORT_BASES)
    return first, first + CELL_PORT_BLOCK_SIZE - 1

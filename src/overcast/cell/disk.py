"""Disk usage of instance and staging directories."""

from __future__ import annotations

import os
from pathlib import Path


def directory_size(path: Path) -> int:
    """Bytes of the files under a directory (links not followed; unreadable parts skipped)."""
    total = 0
    stack = [str(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total

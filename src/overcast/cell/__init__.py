"""The cell agent: runs instances through a runtime, reports them on the bus (DESIGN.md
section 8)."""

from overcast.cell.agent import CellAgent
from overcast.cell.runtime import ExitStatus, ProcessHandle, Runtime, Usage

__all__ = ["CellAgent", "ExitStatus", "ProcessHandle", "Runtime", "Usage"]

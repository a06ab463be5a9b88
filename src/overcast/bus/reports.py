"""Actual state from the cells' reports, as every listener keeps it (the controller's cell
directory and the health service): a heartbeat lists every instance of its cell, and events and
RPC replies report changes in between. Each report carries the cell's sequence number; for each
instance the report with the highest one wins, whatever order they arrived in, so a heartbeat
sent just before a stop cannot bring the stopped instance back."""

from __future__ import annotations

from overcast.bus.messages import Heartbeat, InstanceReport


def merge_heartbeat(
    known: dict[str, InstanceReport], heartbeat: Heartbeat
) -> dict[str, InstanceReport]:
    """The instance table after `heartbeat`: what it lists, except where a newer report is
    already known, plus known reports newer than the heartbeat that it could not include."""
    listed = {report.instance_guid: report for report in heartbeat.instances}
    merged: dict[str, InstanceReport] = {}
    for guid, report in listed.items():
        current = known.get(guid)
        merged[guid] = current if current is not None and current.seq > report.seq else report
    for guid, report in known.items():
        if guid not in listed and report.seq > heartbeat.seq:
            merged[guid] = report
    return merged


def apply_report(known: dict[str, InstanceReport], report: InstanceReport) -> None:
    current = known.get(report.instance_guid)
    if current is None or report.seq >= current.seq:
        known[report.instance_guid] = report

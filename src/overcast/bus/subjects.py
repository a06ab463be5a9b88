"""Every bus subject, in one place. Nothing spells a subject inline."""

from __future__ import annotations

import re

CELL_HEARTBEAT = "cell.heartbeat"
INSTANCE_EVENT = "instance.event"
ROUTER_REGISTER = "router.register"
ROUTER_UNREGISTER = "router.unregister"
ROUTER_START = "router.start"
ROUTER_GREET = "router.greet"
AGENT_DISCOVER = "agent.discover"
# A controller or health manager that (re)started asks every cell to heartbeat at once.
CELL_DISCOVER = "cell.discover"
# The health service judged a cell lost: routers stop sending its instances requests.
CELL_LOST = "cell.lost"
# Every app's log lines (controllers keep a recent buffer per app).
ALL_APP_LOGS = "logs.*"
# Controllers tell each other (and idle job workers) that a job was queued.
JOBS_SUBMITTED = "jobs.submitted"

_TOKEN = re.compile(r"^[A-Za-z0-9_\-:]+$")


def _token(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"not a valid subject token: {value!r}")
    return value


def cell_rpc(cell_id: str) -> str:
    return f"cell.{_token(cell_id)}.rpc"


def app_logs(app_guid: str) -> str:
    return f"logs.{_token(app_guid)}"


def agent_op(agent_id: str) -> str:
    return f"agent.{_token(agent_id)}.op"


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: `*` is one token, `>` (last) is one or more tokens."""
    pattern_tokens = pattern.split(".")
    subject_tokens = subject.split(".")
    for index, token in enumerate(pattern_tokens):
        if token == ">":
            return len(subject_tokens) > index
        if index >= len(subject_tokens):
            return False
        if token != "*" and token != subject_tokens[index]:
            return False
    return len(pattern_tokens) == len(subject_tokens)

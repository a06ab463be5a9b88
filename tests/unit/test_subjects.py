"""Subject builders and NATS wildcard matching (the memory bus routes with it)."""

from __future__ import annotations

import pytest

from overcast.bus import subjects
from overcast.bus.subjects import agent_op, app_logs, cell_rpc, subject_matches


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("cell.heartbeat", "cell.heartbeat", True),
        ("cell.heartbeat", "cell.heartbeats", False),
        ("cell.heartbeat", "cell", False),
        ("cell.heartbeat", "cell.heartbeat.extra", False),
        ("cell.*.rpc", "cell.c1.rpc", True),
        ("cell.*.rpc", "cell.c1.c2.rpc", False),
        ("cell.*.rpc", "cell.rpc", False),
        ("cell.*", "cell.c1", True),
        ("cell.*", "cell", False),
        ("cell.*", "cell.c1.rpc", False),
        ("*", "cell", True),
        ("*", "cell.c1", False),
        ("*.*", "cell.c1", True),
        ("logs.>", "logs.app", True),
        ("logs.>", "logs.app.web.0", True),
        ("logs.>", "logs", False),
        (">", "anything", True),
        (">", "any.thing.at.all", True),
        ("*.>", "a.b", True),
        ("*.>", "a", False),
        ("router.*.>", "router.register.x", True),
        ("router.*.>", "router.register", False),
        ("a.b", "a.c", False),
    ],
)
def test_subject_matches(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


def test_subject_builders() -> None:
    assert cell_rpc("cell-1") == "cell.cell-1.rpc"
    assert app_logs("1b2c3d4e-aaaa-bbbb-cccc-123456789abc") == (
        "logs.1b2c3d4e-aaaa-bbbb-cccc-123456789abc"
    )
    assert agent_op("agent_7:east") == "agent.agent_7:east.op"
    assert subject_matches("cell.*.rpc", cell_rpc("c9"))
    assert subject_matches("logs.>", app_logs("guid"))


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "*", ">", "a*", "x\r\nPUB", "ünï"])
@pytest.mark.parametrize("builder", [cell_rpc, app_logs, agent_op])
def test_subject_builders_refuse_tokens_that_are_not_one_plain_token(
    builder: object, bad: str
) -> None:
    assert callable(builder)
    with pytest.raises(ValueError):
        builder(bad)


def test_constants_are_plain_subjects() -> None:
    names = [name for name in dir(subjects) if name.isupper() and not name.startswith("_")]
    assert names
    for name in names:
        value = getattr(subjects, name)
        assert isinstance(value, str)
        assert value and ">" not in value and " " not in value
        # Only subscription patterns, named as such, hold a wildcard (as a whole token).
        if name.startswith("ALL_"):
            assert value.split(".")[-1] == "*", name
        else:
            assert "*" not in value, name
        assert all(value.split(".")), name

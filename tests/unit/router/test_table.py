"""The route table: pure, with time passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overcast.router.endpoints import Endpoint
from overcast.router.table import RouteTable, Tag, split_uri


def ep(port: int, instance: str = "i", index: int = 0) -> Endpoint:
    return Endpoint(host="10.0.0.1", port=port, app_guid="app", instance_guid=instance, index=index)


def table(threshold: float = 30.0) -> RouteTable:
    return RouteTable(prune_threshold_seconds=threshold)


def ports(route: object) -> list[int]:
    assert route is not None
    return [endpoint.port for endpoint in route.endpoints]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("app.example.com", ("app.example.com", "")),
        ("App.Example.COM/Api/", ("app.example.com", "/api")),
        ("app.example.com/a/b", ("app.example.com", "/a/b")),
        ("http://app.example.com:8080/x", ("app.example.com", "/x")),
        ("example.com/", ("example.com", "")),
    ],
)
def test_split_uri(uri: str, expected: tuple[str, str]) -> None:
    assert split_uri(uri) == expected


@pytest.mark.parametrize("uri", ["", "/path", "a b.com", "app.com/x?y", "app.com/#f"])
def test_split_uri_refuses(uri: str) -> None:
    with pytest.raises(ValueError):
        split_uri(uri)


def test_longest_path_prefix_wins_on_whole_segments() -> None:
    routes = table()
    routes.register("app.example.com", ep(1), Tag("a", 1), 0)
    routes.register("app.example.com/api", ep(2), Tag("b", 1), 0)
    routes.register("app.example.com/api/v2", ep(3), Tag("c", 1), 0)
    assert ports(routes.lookup("app.example.com", "/")) == [1]
    assert ports(routes.lookup("app.example.com", "/apix")) == [1]
    assert ports(routes.lookup("app.example.com", "/api")) == [2]
    assert ports(routes.lookup("app.example.com", "/api/v1/users?x=1")) == [2]
    assert ports(routes.lookup("APP.example.com:8080", "/api/v2/x")) == [3]
    assert routes.lookup("other.example.com", "/") is None


def test_a_route_with_only_a_path_serves_nothing_else() -> None:
    routes = table()
    routes.register("app.example.com/api", ep(2), Tag("b", 1), 0)
    assert routes.lookup("app.example.com", "/") is None
    assert ports(routes.lookup("app.example.com", "/api/x")) == [2]


def test_wildcard_hosts() -> None:
    routes = table()
    routes.register("*.example.com", ep(1), Tag("a", 1), 0)
    routes.register("exact.example.com", ep(2), Tag("b", 1), 0)
    assert ports(routes.lookup("anything.example.com", "/")) == [1]
    assert ports(routes.lookup("deep.any.example.com", "/")) == [1]
    assert ports(routes.lookup("exact.example.com", "/")) == [2]
    assert routes.lookup("example.com", "/") is None


def test_several_endpoints_and_load_balancing_option() -> None:
    routes = table()
    routes.register("app.com", ep(2, "i2"), Tag("i2", 1), 0)
    routes.register("app.com", ep(1, "i1"), Tag("i1", 1), 0, load_balancing="least-connection")
    route = routes.lookup("app.com", "/")
    assert ports(route) == [1, 2]
    assert route is not None and route.load_balancing == "least-connection"
    routes.register("app.com", ep(1, "i1"), Tag("i1", 1), 0, load_balancing="bogus")
    again = routes.lookup("app.com", "/")
    assert again is not None and again.load_balancing == "least-connection"


def test_an_older_registration_never_overwrites_a_newer_one() -> None:
    routes = table()
    assert routes.register("app.com", ep(1, "i1", index=0), Tag("i1", 5), 0)
    assert not routes.register("app.com", ep(1, "i1", index=9), Tag("i1", 4), 1)
    route = routes.lookup("app.com", "/")
    assert route is not None and route.endpoints[0].index == 0
    # The same tag refreshes; a new source at the same address replaces.
    assert routes.register("app.com", ep(1, "i1"), Tag("i1", 5), 2)
    assert routes.register("app.com", ep(1, "i9", index=3), Tag("i9", 0), 3)
    route = routes.lookup("app.com", "/")
    assert route is not None and route.endpoints[0].instance_guid == "i9"


def test_unregister_respects_tags_and_leaves_a_tombstone() -> None:
    routes = table()
    routes.register("app.com", ep(1, "i1"), Tag("i1", 3), 0)
    # An unregister from another instance that used to hold the address: ignored.
    assert not routes.unregister("app.com", "10.0.0.1:1", Tag("old", 7), 1)
    # An older unregister of this one: ignored.
    assert not routes.unregister("app.com", "10.0.0.1:1", Tag("i1", 2), 1)
    assert routes.unregister("app.com", "10.0.0.1:1", Tag("i1", 4), 1)
    assert routes.lookup("app.com", "/") is None
    assert routes.uris() == []
    # A late register the unregister already superseded does not bring it back ...
    assert not routes.register("app.com", ep(1, "i1"), Tag("i1", 4), 2)
    # ... but a newer one (or another instance) does.
    assert routes.register("app.com", ep(1, "i1"), Tag("i1", 5), 3)
    assert ports(routes.lookup("app.com", "/")) == [1]


def test_a_lost_cell_s_endpoints_are_withdrawn_until_there_is_news() -> None:
    routes = table(threshold=30)
    paused = Endpoint(host="10.0.0.2", port=1, instance_guid="i1", cell_id="c1")
    other = Endpoint(host="10.0.0.3", port=2, instance_guid="i2", cell_id="c2")
    routes.register("app.com", paused, Tag("i1", 3), 0)
    routes.register("app.com/api", paused, Tag("i1", 3), 0)
    routes.register("app.com", other, Tag("i2", 1), 0)
    removed = routes.withdraw_cell("c1", 5)
    assert sorted(uri for uri, _ in removed) == ["app.com", "app.com/api"]
    assert [e.cell_id for e in routes.lookup("app.com", "/").endpoints] == ["c2"]  # type: ignore[union-attr]
    assert routes.lookup("app.com", "/api").path == ""  # type: ignore[union-attr]
    # The resumed cell re-registering the same instance state is not news ...
    assert not routes.register("app.com", paused, Tag("i1", 3), 6)
    # ... a change of its state is; and after the prune threshold the tombstone is gone.
    assert routes.register("app.com/api", paused, Tag("i1", 4), 7)
    routes.prune(36)
    assert routes.register("app.com", paused, Tag("i1", 3), 37)
    assert routes.withdraw_cell("", 40) == []  # registrations without a cell are kept


def test_a_withdrawal_holds_longer_than_an_unregister() -> None:
    routes = RouteTable(prune_threshold_seconds=3, lost_hold_seconds=60)
    paused = Endpoint(host="10.0.0.2", port=1, instance_guid="i1", cell_id="c1")
    routes.register("app.com", paused, Tag("i1", 3), 0)
    routes.withdraw_cell("c1", 1)
    routes.prune(30)
    assert not routes.register("app.com", paused, Tag("i1", 3), 30)  # still held
    routes.prune(62)
    assert routes.register("app.com", paused, Tag("i1", 3), 62)


def test_a_cell_announced_back_is_readmitted_but_news_stands() -> None:
    routes = table(threshold=30)
    kept = Endpoint(host="10.0.0.2", port=1, instance_guid="i1", cell_id="c1")
    gone = Endpoint(host="10.0.0.2", port=2, instance_guid="i2", cell_id="c1")
    routes.register("app.com", kept, Tag("i1", 3), 0)
    routes.register("app.com", gone, Tag("i2", 5), 0)
    routes.withdraw_cell("c1", 1)
    routes.unregister("app.com", gone.address, Tag("i2", 6), 2)  # stopped meanwhile
    assert routes.readmit_cell("c1") == 1
    assert routes.register("app.com", kept, Tag("i1", 3), 3)
    assert not routes.register("app.com", gone, Tag("i2", 5), 3)  # its stop still stands
    assert routes.readmit_cell("c1") == 0


def test_stale_endpoints_are_pruned() -> None:
    routes = table(threshold=30)
    routes.register("app.com", ep(1, "i1"), Tag("i1", 1), 0)
    routes.register("app.com", ep(2, "i2"), Tag("i2", 1), 0, stale_threshold=10)
    routes.register("app.com", ep(3, "i3"), Tag("i3", 1), 0, stale_threshold=999)
    assert routes.prune(9) == []
    assert [e.port for _, e in routes.prune(11)] == [2]
    routes.register("app.com", ep(1, "i1"), Tag("i1", 1), 25)
    assert [e.port for _, e in routes.prune(31)] == [3]  # capped at the table's 30 s
    assert ports(routes.lookup("app.com", "/")) == [1]
    assert [uri for uri, _ in routes.prune(60)] == ["app.com"]
    assert routes.lookup("app.com", "/") is None


def test_pruning_suspended_while_the_bus_is_down_then_everything_freshened() -> None:
    routes = table(threshold=30)
    routes.register("app.com", ep(1, "i1"), Tag("i1", 1), 0)
    routes.suspend_pruning()
    assert routes.prune(1000) == []
    assert ports(routes.lookup("app.com", "/")) == [1]
    routes.resume_pruning(1000)
    assert routes.prune(1029) == []
    assert len(routes.prune(1031)) == 1


def test_bad_uris_are_ignored() -> None:
    routes = table()
    assert not routes.register("", ep(1), Tag("a", 1), 0)
    assert not routes.unregister("a b", "x:1", Tag("a", 1), 0)
    assert routes.endpoint_count() == 0


operations = st.lists(
    st.tuples(
        st.sampled_from(["register", "unregister"]),
        st.sampled_from(["i1", "i2"]),
        st.integers(0, 5),
        st.sampled_from([1, 2]),
    ),
    max_size=40,
)


@given(operations)
def test_the_table_ends_as_the_newest_message_per_source_says(
    ops: list[tuple[str, str, int, int]],
) -> None:
    """Whatever the order, an endpoint is present exactly when its source's newest message
    (highest index; a register winning ties with nothing, an unregister winning ties with a
    register) is a register — for one source per address."""
    routes = table()
    newest: dict[tuple[str, int], tuple[int, str]] = {}
    for op, instance, index, port in ops:
        address_port = port if instance == "i1" else port + 10
        tag = Tag(instance, index)
        if op == "register":
            routes.register("app.com", ep(address_port, instance), tag, 0)
        else:
            routes.unregister("app.com", f"10.0.0.1:{address_port}", tag, 0)
        key = (instance, address_port)
        best = newest.get(key)
        if best is None or index > best[0] or (index == best[0] and op == "unregister"):
            newest[key] = (index, op)
    present = (
        {endpoint.port for endpoint in routes.endpoints_of("app.com")} if routes.uris() else set()
    )
    expected = {port for (_, port), (_, op) in newest.items() if op == "register"}
    assert present == expected


def test_access_lines_hide_secret_query_values() -> None:
    from overcast.router.endpoints import AccessRecord
    from overcast.router.service import access_line

    record = AccessRecord(
        request_id="r-1",
        client="10.0.0.9",
        method="GET",
        target="/cb?code=7&access_token=abc123&Password=hunter2",
        host="app.com",
        status=200,
        bytes_received=0,
        bytes_sent=5,
        started_at=0.0,
        duration_seconds=0.001,
        endpoint=ep(1),
    )
    line = access_line(record)
    assert "abc123" not in line and "hunter2" not in line
    assert "code=7" in line and 'vcap_request_id:"r-1"' in line and '"10.0.0.1:1"' in line


def test_the_fast_log_line_payload_is_the_schemas_wire_form() -> None:
    from overcast.bus.messages import LogLine

    payload = LogLine.payload("app-1", "RTR", "a line", 123, instance_guid="i-1")
    assert LogLine.parse(payload).wire() == payload
    assert LogLine.payload("app-1", "RTR", "x", 1, stream="stderr")["instance_guid"] is None


def test_log_batches_parse_into_their_lines() -> None:
    from overcast.bus.messages import BadMessage, LogBatch, LogLine, parse_log_message

    one = LogLine.payload("app-1", "RTR", "first", 1)
    two = LogLine.payload("app-1", "RTR", "second", 2)
    assert [line.line for line in parse_log_message(LogBatch.payload([one, two]))] == [
        "first",
        "second",
    ]
    assert [line.line for line in parse_log_message(one)] == ["first"]
    with pytest.raises(BadMessage):
        parse_log_message({"lines": [{"app_guid": "x"}]})


def test_access_line_timestamps() -> None:
    from datetime import UTC, datetime

    from overcast.router.service import _timestamp

    moment = datetime(2026, 11, 21, 9, 30, 5, 123456, tzinfo=UTC).timestamp()
    assert _timestamp(moment) == "2026-11-21T09:30:05.123456Z"
    assert _timestamp(moment + 1.5).startswith("2026-11-21T09:30:06.6")

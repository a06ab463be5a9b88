"""Choosing endpoints: round robin per route, least connection with round-robin ties, the
per-endpoint cap, and ineligibility after a failed connection (with a fake clock)."""

from __future__ import annotations

from overcast.router.balancer import Balancer
from overcast.router.endpoints import Endpoint, Route
from overcast.testing.clock import FakeClock

A, B, C = (Endpoint("10.0.0.1", port) for port in (1, 2, 3))


def balancer(clock: FakeClock | None = None, cap: int = 256) -> Balancer:
    clock = clock or FakeClock()
    return Balancer(max_connections=cap, ineligible_seconds=30, clock=clock.monotonic)


def route(*endpoints: Endpoint, least: bool = False, path: str = "/") -> Route:
    return Route("app.test", path, endpoints, "least-connection" if least else "round-robin")


def picks(chooser: Balancer, chosen_route: Route, count: int) -> list[int]:
    result = []
    for _ in range(count):
        endpoint = chooser.pick(chosen_route)
        assert endpoint is not None
        result.append(endpoint.port)
    return result


def test_round_robin_order() -> None:
    assert picks(balancer(), route(A, B, C), 7) == [1, 2, 3, 1, 2, 3, 1]


def test_each_route_has_its_own_cursor() -> None:
    chooser = balancer()
    first, second = route(A, B), route(A, B, path="/other")
    assert picks(chooser, first, 1) == [1]
    assert picks(chooser, second, 1) == [1]
    assert picks(chooser, first, 1) == [2]


def test_the_cursor_survives_a_changed_endpoint_list() -> None:
    chooser = balancer()
    assert picks(chooser, route(A, B, C), 2) == [1, 2]
    assert picks(chooser, route(A, B), 2) == [1, 2]  # cursor 2 wraps to A


def test_least_connection_picks_the_fewest_in_flight() -> None:
    chooser = balancer()
    chosen = route(A, B, C, least=True)
    chooser.acquire(A)
    chooser.acquire(A)
    chooser.acquire(B)
    assert picks(chooser, chosen, 3) == [3, 3, 3]
    chooser.acquire(C)
    chooser.acquire(C)
    assert picks(chooser, chosen, 1) == [2]


def test_least_connection_ties_go_round_robin() -> None:
    assert picks(balancer(), route(A, B, C, least=True), 6) == [1, 2, 3, 1, 2, 3]


def test_endpoints_at_their_cap_are_skipped() -> None:
    chooser = balancer(cap=2)
    chosen = route(A, B)
    state = chooser.acquire(A)
    chooser.acquire(A)
    assert picks(chooser, chosen, 3) == [2, 2, 2]
    chooser.acquire(B)
    chooser.acquire(B)
    assert chooser.pick(chosen) is None
    Balancer.release(state)
    assert picks(chooser, chosen, 1) == [1]


def test_a_failed_endpoint_is_ineligible_for_30_seconds() -> None:
    clock = FakeClock()
    chooser = balancer(clock)
    chosen = route(A, B, C)
    chooser.mark_failed(B)
    assert not chooser.eligible(B)
    assert picks(chooser, chosen, 4) == [1, 3, 1, 3]
    clock.advance(29.9)
    assert picks(chooser, chosen, 2) == [1, 3]
    clock.advance(0.1)
    assert chooser.eligible(B)
    assert sorted(picks(chooser, chosen, 3)) == [1, 2, 3]


def test_ineligible_endpoints_are_still_tried_when_nothing_else_remains() -> None:
    chooser = balancer()
    chosen = route(A, B)
    chooser.mark_failed(A)
    chooser.mark_failed(B)
    assert picks(chooser, chosen, 2) == [1, 2]
    assert chooser.pick(chosen, exclude={A.address}) == B
    assert chooser.pick(chosen, exclude={A.address, B.address}) is None


def test_excluded_endpoints_are_skipped() -> None:
    chooser = balancer()
    chosen = route(A, B, C)
    assert chooser.pick(chosen, exclude={A.address}) == B
    assert chooser.pick(chosen, exclude={C.address}) == A  # cursor after B: C excluded


def test_no_endpoints() -> None:
    assert balancer().pick(route()) is None


def test_prune_forgets_idle_and_eligible_endpoints() -> None:
    clock = FakeClock()
    chooser = balancer(clock)
    state = chooser.acquire(A)
    chooser.mark_failed(B)
    chooser.state(C)
    chooser.prune()
    assert chooser.in_flight(A) == 1
    assert not chooser.eligible(B)
    Balancer.release(state)
    clock.advance(31)
    chooser.prune()
    assert chooser._states == {}

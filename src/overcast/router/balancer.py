"""Choosing an endpoint for a request: round robin (a cursor per route) or least connection
(fewest requests in flight, ties in round-robin order), skipping the endpoints already tried
for this request, those at their connection cap, and those whose connection failed lately
(ineligible for `ineligible_seconds`, unless no other endpoint remains)."""

from __future__ import annotations

from collections.abc import Callable, Collection

from overcast.router.endpoints import Endpoint, Route


class EndpointState:
    """What the data plane knows of one endpoint address."""

    __slots__ = ("address", "in_flight", "ineligible_until")

    def __init__(self, address: str) -> None:
        self.address = address
        self.in_flight = 0
        self.ineligible_until = 0.0


class Balancer:
    def __init__(
        self,
        *,
        max_connections: int,
        ineligible_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self.max_connections = max_connections
        self.ineligible_seconds = ineligible_seconds
        self._clock = clock
        self._states: dict[str, EndpointState] = {}
        self._cursors: dict[tuple[str, str], int] = {}

    def state(self, endpoint: Endpoint) -> EndpointState:
        address = endpoint.address
        state = self._states.get(address)
        if state is None:
            state = self._states[address] = EndpointState(address)
        return state

    def in_flight(self, endpoint: Endpoint) -> int:
        state = self._states.get(endpoint.address)
        return state.in_flight if state is not None else 0

    def eligible(self, endpoint: Endpoint) -> bool:
        state = self._states.get(endpoint.address)
        return state is None or state.ineligible_until <= self._clock()

    def pick(self, route: Route, exclude: Collection[str] = ()) -> Endpoint | None:
        """The endpoint for the next request on `route`, not one of `exclude` (addresses) and
        not at its connection cap; eligible endpoints first. None: nothing left to try."""
        endpoints = route.endpoints
        count = len(endpoints)
        if count == 0:
            return None
        key = (route.host, route.path)
        start = self._cursors.get(key, 0) % count
        now = self._clock()
        states = self._states
        cap = self.max_connections
        least = route.load_balancing == "least-connection"
        chosen = -1
        chosen_load = 0
        fallback = -1  # ineligible, but better than nothing
        fallback_load = 0
        for step in range(count):
            index = start + step
            if index >= count:
                index -= count
            endpoint = endpoints[index]
            if exclude and endpoint.address in exclude:
                continue
            state = states.get(endpoint.address)
            load = 0
            eligible = True
            if state is not None:
                load = state.in_flight
                if load >= cap:
                    continue
                eligible = state.ineligible_until <= now
            if eligible:
                if chosen < 0 or load < chosen_load:
                    chosen, chosen_load = index, load
                    if not least or load == 0:
                        break
            elif fallback < 0 or load < fallback_load:
                fallback, fallback_load = index, load
        if chosen < 0:
            chosen = fallback
            if chosen < 0:
                return None
        self._cursors[key] = chosen + 1
        return endpoints[chosen]

    def acquire(self, endpoint: Endpoint) -> EndpointState:
        state = self.state(endpoint)
        state.in_flight += 1
        return state

    @staticmethod
    def release(state: EndpointState) -> None:
        state.in_flight -= 1

    def mark_failed(self, endpoint: Endpoint) -> None:
        """The connection could not be made: no requests for `ineligible_seconds`."""
        self.state(endpoint).ineligible_until = self._clock() + self.ineligible_seconds

    def prune(self) -> None:
        """Forget endpoints with nothing in flight and no ineligibility left."""
        now = self._clock()
        for address in [
            address
            for address, state in self._states.items()
            if state.in_flight == 0 and state.ineligible_until <= now
        ]:
            del self._states[address]
        if len(self._cursors) > 65536:
            self._cursors.clear()

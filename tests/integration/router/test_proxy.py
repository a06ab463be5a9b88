"""The built-in data plane end to end: a real ProxyServer on 127.0.0.1 in front of real
backends, driven with httpx, websockets and raw sockets."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import h11
import httpx
import pytest
import websockets.asyncio.client
import websockets.asyncio.server

from overcast.router.endpoints import AccessRecord, Endpoint
from overcast.router.proxy import ProxyOptions, ProxyServer
from tests.integration.router.backends import (
    Exchange,
    Routes,
    raw_request,
    read_response,
    read_to_end,
)
from tests.integration.router.conftest import Proxy, StartBackend, StartProxy

HOST = {"Host": "app.test"}
MB = 1024 * 1024


def closed_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def client(port: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=HOST, timeout=10)


# -- routing and balancing ------------------------------------------------------------------------


async def test_round_robin_over_two_endpoints(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    a = await backend_factory(name="a")
    b = await backend_factory(name="b")
    routes = Routes()
    routes.add("app.test", a, b)
    proxy = await proxy_factory(routes)
    async with await client(proxy.port) as http:
        names = [(await http.get(f"/n{i}")).headers["X-Backend"] for i in range(6)]
    assert names == ["a", "b", "a", "b", "a", "b"]
    assert len(a.seen) == len(b.seen) == 3


async def test_least_connection_prefers_the_idle_endpoint(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    release = asyncio.Event()

    async def slow(exchange: Exchange) -> None:
        await release.wait()
        await exchange.respond(200, [("X-Backend", "slow")], b"slow")

    slow_backend = await backend_factory(slow, name="slow")
    fast = await backend_factory(name="fast")
    routes = Routes()
    routes.add("app.test", slow_backend, fast, balancing="least-connection")
    proxy = await proxy_factory(routes)
    async with await client(proxy.port) as http:
        pending = asyncio.create_task(http.get("/held"))
        await slow_backend.arrived.wait()
        names = [(await http.get(f"/{i}")).headers["X-Backend"] for i in range(4)]
        release.set()
        assert (await pending).status_code == 200
    assert names == ["fast"] * 4


async def test_routing_uses_host_without_port_and_path_without_query(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    async with await client(proxy.port) as http:
        response = await http.get("/a/b?c=d", headers={"Host": "APP.Test:8080"})
    assert response.status_code == 200
    assert routes.asked == [("app.test", "/a/b")]
    assert backend.seen[0].target == "/a/b?c=d"
    assert backend.seen[0].header("Host") == "APP.Test:8080"


async def test_absolute_form_matching_host_is_forwarded_in_origin_form(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    response, _ = await raw_request(
        proxy.port,
        b"GET http://app.test/x?y HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    assert response.status == 200
    assert backend.seen[0].target == "/x?y"


async def test_unknown_host_gets_404(proxy_factory: StartProxy) -> None:
    proxy = await proxy_factory(Routes())
    async with await client(proxy.port) as http:
        response = await http.get("/", headers={"Host": "nowhere.test"})
    assert response.status_code == 404
    assert response.text == "404 Not Found: Requested route ('nowhere.test') does not exist.\n"
    assert response.headers["X-Cf-Routererror"] == "unknown_route"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert proxy.records[-1].error == "unknown_route"


async def test_route_without_endpoints_gets_503(proxy_factory: StartProxy) -> None:
    routes = Routes()
    routes.add("app.test")
    proxy = await proxy_factory(routes)
    async with await client(proxy.port) as http:
        response = await http.get("/")
    assert response.status_code == 503
    assert response.headers["X-Cf-Routererror"] == "no_endpoints"


async def test_not_ready_gets_503_for_every_request(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes, ready=False)
    async with await client(proxy.port) as http:
        response = await http.get("/")
        assert response.status_code == 503
        assert response.text == "503 Service Unavailable: router not ready\n"
        assert response.headers["X-Cf-Routererror"] == "not_ready"
        proxy.server.ready = True
        assert (await http.get("/")).status_code == 200
    assert len(backend.seen) == 1


# -- failures and retries -------------------------------------------------------------------------


async def test_dead_endpoint_is_skipped_and_ineligible_for_30_seconds(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    alive = await backend_factory(name="alive")
    dead = Endpoint("127.0.0.1", closed_port())
    routes = Routes()
    routes.add("app.test", dead, alive)
    proxy = await proxy_factory(routes)
    async with await client(proxy.port) as http:
        for _ in range(6):
            response = await http.get("/")
            assert response.status_code == 200
            assert response.headers["X-Backend"] == "alive"
        connect_errors = proxy.metric("overcast_router_backend_errors_total", kind="connect")
        assert connect_errors == 1
        assert not proxy.server.balancer.eligible(dead)

        proxy.clock.advance(29)
        await http.get("/")
        await http.get("/")
        assert proxy.metric("overcast_router_backend_errors_total", kind="connect") == 1

        proxy.clock.advance(2)  # 31 s after the failure: tried again (and fails again)
        await http.get("/")
        await http.get("/")
        assert proxy.metric("overcast_router_backend_errors_total", kind="connect") == 2
    assert len(alive.seen) == 10


async def test_all_endpoints_dead_gives_502_after_trying_each_once(
    proxy_factory: StartProxy,
) -> None:
    routes = Routes()
    routes.add(
        "app.test", Endpoint("127.0.0.1", closed_port()), Endpoint("127.0.0.1", closed_port())
    )
    proxy = await proxy_factory(routes)
    async with await client(proxy.port) as http:
        response = await http.get("/")
        assert response.status_code == 502
        assert response.text == (
            "502 Bad Gateway: Registered endpoint failed to handle the request.\n"
        )
        assert response.headers["X-Cf-Routererror"] == "endpoint_failure"
        assert proxy.metric("overcast_router_backend_errors_total", kind="connect") == 2
        # Both ineligible now: still tried (rather than refused outright), still 502.
        assert (await http.get("/")).status_code == 502
        assert proxy.metric("overcast_router_backend_errors_total", kind="connect") == 4


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_no_retry_once_the_request_was_sent(
    method: str, backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    async def read_and_hang_up(exchange: Exchange) -> None:
        await exchange.body()
        exchange.close = True

    hang_up = await backend_factory(read_and_hang_up, name="hang-up")
    healthy = await backend_factory(name="healthy")
    routes = Routes()
    routes.add("app.test", hang_up, healthy)
    proxy = await proxy_factory(routes)
    async with await client(proxy.port) as http:
        response = await http.request(method, "/", content=b"x" if method == "POST" else None)
    assert response.status_code == 502
    assert response.headers["X-Cf-Routererror"] == "endpoint_failure"
    assert len(hang_up.seen) == 1
    assert healthy.seen == []
    assert proxy.records[-1].endpoint == hang_up.endpoint


async def test_pooled_connection_closed_by_backend_is_retried_once_for_get(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    """The backend answers the first request of each connection and hangs up on the second
    without a word, as a backend whose keep-alive timeout just expired would."""

    async def one_per_connection(exchange: Exchange) -> None:
        if exchange.seen.connection in answered:
            exchange.close = True
            return
        answered.add(exchange.seen.connection)
        await exchange.body()
        await exchange.respond(200, [], b"ok")

    answered: set[int] = set()
    backend = await backend_factory(one_per_connection)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    async with await client(proxy.port) as http:
        assert (await http.get("/1")).status_code == 200
        assert (await http.get("/2")).status_code == 200  # stale, retried on a new connection
        assert len(backend.seen) == 3
        assert backend.connections == 2
        # Not for a request with a body: that one might have been acted upon.
        response = await http.post("/3", content=b"body")
        assert response.status_code == 502
    assert proxy.metric("overcast_router_backend_errors_total", kind="stale_connection") == 1


async def test_connection_cap_gives_fast_503(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    release = asyncio.Event()

    async def held(exchange: Exchange) -> None:
        await release.wait()
        await exchange.respond(200, [], b"done")

    backend = await backend_factory(held)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes, max_connections_per_endpoint=1)
    async with await client(proxy.port) as http:
        first = asyncio.create_task(http.get("/first"))
        await backend.arrived.wait()
        async with asyncio.timeout(2):  # at once, not after the held request
            second = await http.get("/second")
        assert second.status_code == 503
        assert second.headers["X-Cf-Routererror"] == "connection_limit_reached"
        release.set()
        assert (await first).status_code == 200
        assert (await http.get("/third")).status_code == 200
    assert [seen.target for seen in backend.seen] == ["/first", "/third"]


async def test_backend_connect_timeout(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    """A listener whose accept queue is full drops new SYNs: the connect times out, the
    endpoint is skipped like a refused one."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        alive = await backend_factory(name="alive")
        routes = Routes()
        routes.add("app.test", Endpoint("127.0.0.1", port), alive)
        proxy = await proxy_factory(routes, backend_connect_timeout=0.3)
        async with await client(proxy.port) as http:
            response = await http.get("/")
        assert response.status_code == 200
        assert response.headers["X-Backend"] == "alive"
        assert proxy.metric("overcast_router_backend_errors_total", kind="connect") == 1
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# -- timeouts -------------------------------------------------------------------------------------


async def test_backend_response_timeout_gives_504(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    async def silent(exchange: Exchange) -> None:
        await exchange.body()
        await asyncio.Event().wait()

    backend = await backend_factory(silent)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes, backend_response_timeout=0.3)
    async with await client(proxy.port) as http:
        response = await http.get("/")
    assert response.status_code == 504
    assert response.headers["X-Cf-Routererror"] == "gateway_timeout"
    assert proxy.records[-1].error == "gateway_timeout"


async def test_slow_request_head_gets_408(proxy_factory: StartProxy) -> None:
    proxy = await proxy_factory(Routes(), client_header_timeout=0.3)
    response, rest = await raw_request(proxy.port, b"GET / HTTP/1.1\r\nHost: app")
    assert response.status == 408
    assert response.header("X-Cf-Routererror") == "request_timeout"
    assert rest == b""


async def test_silent_connection_is_closed_without_an_answer(proxy_factory: StartProxy) -> None:
    proxy = await proxy_factory(Routes(), client_header_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    async with asyncio.timeout(5):
        assert await read_to_end(reader) == b""
    writer.close()
    assert proxy.records == []


async def test_idle_keep_alive_connection_is_closed(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes, client_idle_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
    async with asyncio.timeout(5):
        response = await read_response(reader)
        assert response.status == 200
        assert await read_to_end(reader) == b""  # closed by the proxy once idle
    writer.close()


async def test_idle_backend_connections_are_closed(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes, backend_idle_timeout=0.2)
    async with await client(proxy.port) as http:
        await http.get("/")
        assert proxy.server.pool.idle_count(backend.endpoint.address) == 1
        proxy.clock.advance(1)
        await http.get("/")  # the pooled one is too old: a new connection
    assert backend.connections == 2


# -- headers --------------------------------------------------------------------------------------


async def test_forwarding_headers(backend_factory: StartBackend, proxy_factory: StartProxy) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes, scheme="https")
    async with await client(proxy.port) as http:
        response = await http.get(
            "/",
            headers={
                "X-Forwarded-For": "203.0.113.9",
                "X-Forwarded-Proto": "gopher",
                "X-Request-Id": "req-1",
                "X-Vcap-Request-Id": "forged",
            },
        )
        seen = backend.seen[0]
        assert seen.all("X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
        assert seen.all("X-Forwarded-Proto") == ["https"]
        assert seen.all("X-Request-Id") == ["req-1"]
        assert seen.all("X-Vcap-Request-Id") == ["req-1"]
        assert response.headers["X-Request-Id"] == "req-1"
        record = proxy.records[-1]
        assert record.request_id == "req-1"
        assert record.client == "127.0.0.1"  # the peer, never the header

        response = await http.get("/", headers={"X-Request-Id": "has space"})
        generated = backend.seen[1].header("X-Request-Id")
        assert generated is not None and generated != "has space" and len(generated) == 36
        assert backend.seen[1].header("X-Vcap-Request-Id") == generated
        assert response.headers["X-Request-Id"] == generated
        assert backend.seen[1].all("X-Forwarded-For") == ["127.0.0.1"]


async def test_hop_by_hop_headers_are_removed_both_ways(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    async def hop_by_hop(exchange: Exchange) -> None:
        await exchange.body()
        await exchange.raw(
            b"HTTP/1.1 200 OK\r\n"
            b"Connection: keep-alive, X-Backend-Private\r\n"
            b"X-Backend-Private: secret\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"Proxy-Authenticate: Basic\r\n"
            b"Trailer: X-T\r\n"
            b"Upgrade: h2c\r\n"
            b"X-Request-Id: backend-id\r\n"
            b"X-Kept: yes\r\n"
            b"Content-Length: 2\r\n\r\nok"
        )
        exchange.close = False

    backend = await backend_factory(hop_by_hop)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    response, _ = await raw_request(
        proxy.port,
        b"GET / HTTP/1.1\r\nHost: app.test\r\n"
        b"Connection: close, X-Client-Private, Host\r\n"
        b"X-Client-Private: secret\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
        b"TE: trailers\r\n"
        b"Trailer: X-T\r\n"
        b"X-Kept: yes\r\n\r\n",
    )
    seen = backend.seen[0]
    names = {name.lower() for name, _ in seen.headers}
    for removed in (
        "connection",
        "x-client-private",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
    ):
        assert removed not in names
    assert seen.header("Host") == "app.test"  # never stripped, even when Connection names it
    assert seen.header("X-Kept") == "yes"

    assert response.status == 200 and response.body == b"ok"
    received = {name.lower() for name, _ in response.headers}
    for removed in ("x-backend-private", "keep-alive", "proxy-authenticate", "trailer", "upgrade"):
        assert removed not in received
    assert response.header("X-Kept") == "yes"
    assert response.header("Connection") == "close"
    assert response.header("X-Request-Id") != "backend-id"


async def test_non_websocket_upgrade_is_an_ordinary_request(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        b"GET /1 HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: app.test\r\n\r\n"
    )
    async with asyncio.timeout(5):
        first = await read_response(reader)
        second = await read_response(reader)
    writer.close()
    assert (first.status, second.status) == (200, 200)
    assert [seen.target for seen in backend.seen] == ["/1", "/2"]
    assert backend.seen[0].header("Upgrade") is None
    assert backend.seen[0].header("HTTP2-Settings") is None


# -- connections ----------------------------------------------------------------------------------


async def test_backend_connections_are_reused(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    async with await client(proxy.port) as http:
        for i in range(10):
            assert (await http.get(f"/{i}")).status_code == 200
        for i in range(5):  # new client connections, same backend connection
            async with httpx.AsyncClient(base_url=proxy.url, headers=HOST) as other:
                assert (await other.post(f"/p{i}", content=b"abc")).status_code == 200
    assert len(backend.seen) == 15
    assert backend.connections == 1


async def test_pipelined_requests_are_answered_in_order(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        b"GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
    )
    async with asyncio.timeout(5):
        bodies = [(await read_response(reader)).body for _ in range(3)]
        assert await read_to_end(reader) == b""
    writer.close()
    assert bodies == [b"backend GET /1 0", b"backend POST /2 3", b"backend GET /3 0"]


async def test_a_flood_of_pipelined_requests(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    """Requests parsed ahead wait their turn (reading pauses meanwhile); none is lost."""
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    count = 1000
    writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: app.test\r\n\r\n" % i for i in range(count)))
    async with asyncio.timeout(20):
        for index in range(count):
            assert (await read_response(reader)).body == b"backend GET /%d 0" % index
    writer.close()
    assert backend.connections == 1


async def test_http10_client(backend_factory: StartBackend, proxy_factory: StartProxy) -> None:
    async def chunked(exchange: Exchange) -> None:
        await exchange.body()
        await exchange.send(h11.Response(status_code=200, headers=[]))  # chunked
        await exchange.send(h11.Data(data=b"hello "))
        await exchange.send(h11.Data(data=b"world"))
        await exchange.send(h11.EndOfMessage())

    backend = await backend_factory(chunked)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    response, rest = await raw_request(proxy.port, b"GET / HTTP/1.0\r\nHost: app.test\r\n\r\n")
    assert response.status == 200
    assert response.header("Transfer-Encoding") is None
    assert response.header("Connection") == "close"
    assert response.body == b"hello world"  # close-delimited
    assert rest == b""

    # HTTP/1.0 keep-alive with a Content-Length response
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    backend.handler = lambda exchange: exchange.respond(200, [], b"ok")
    for _ in range(2):
        writer.write(b"GET / HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n")
        async with asyncio.timeout(5):
            response = await read_response(reader)
        assert response.header("Connection") == "keep-alive"
        assert response.body == b"ok"
    writer.close()


async def test_head_and_bodiless_responses(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    async def bodiless(exchange: Exchange) -> None:
        if exchange.seen.method == "HEAD":
            await exchange.send(h11.Response(status_code=200, headers=[("Content-Length", "1000")]))
            await exchange.send(h11.EndOfMessage())
        elif exchange.seen.target == "/204":
            await exchange.respond(204)
        else:
            await exchange.send(
                h11.Response(status_code=304, headers=[("ETag", '"x"'), ("Content-Length", "5")])
            )
            await exchange.send(h11.EndOfMessage())

    backend = await backend_factory(bodiless)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    async with asyncio.timeout(5):
        writer.write(b"HEAD / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        head = await read_response(reader, head_only=True)
        assert head.status == 200 and head.header("Content-Length") == "1000"
        writer.write(b"GET /204 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        no_content = await read_response(reader)
        assert no_content.status == 204 and no_content.header("Content-Length") is None
        writer.write(b"GET /304 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        not_modified = await read_response(reader, head_only=True)
        assert not_modified.status == 304 and not_modified.header("ETag") == '"x"'
        assert await read_to_end(reader) == b""  # no body bytes anywhere
    writer.close()
    assert backend.connections == 1


async def test_expect_100_continue_is_relayed(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    async def continuing(exchange: Exchange) -> None:
        assert exchange.h11.they_are_waiting_for_100_continue
        await exchange.send(h11.InformationalResponse(status_code=100, headers=[]))
        body = await exchange.body()
        await exchange.respond(200, [], body.upper())

    backend = await backend_factory(continuing)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        b"PUT / HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    async with asyncio.timeout(5):
        interim = await read_response(reader)
        assert interim.status == 100
        writer.write(b"hello")
        final = await read_response(reader)
    writer.close()
    assert final.status == 200 and final.body == b"HELLO"


# -- streaming ------------------------------------------------------------------------------------


async def test_large_response_is_streamed(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    """The backend sends 1 MB, then waits until the client has seen bytes before sending the
    other 49 MB: a proxy buffering the response would never deliver the first ones."""
    client_got_bytes = asyncio.Event()
    piece = b"x" * MB

    async def big(exchange: Exchange) -> None:
        await exchange.send(
            h11.Response(status_code=200, headers=[("Content-Length", str(50 * MB))])
        )
        await exchange.send(h11.Data(data=piece))
        async with asyncio.timeout(10):
            await client_got_bytes.wait()
        for _ in range(49):
            await exchange.send(h11.Data(data=piece))
        await exchange.send(h11.EndOfMessage())

    backend = await backend_factory(big)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    total = 0
    async with await client(proxy.port) as http, http.stream("GET", "/big") as response:
        async for data in response.aiter_raw():
            total += len(data)
            client_got_bytes.set()
    assert total == 50 * MB
    assert proxy.records[-1].bytes_sent == 50 * MB


async def test_chunked_response_is_streamed_and_reframed(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    client_got_bytes = asyncio.Event()

    async def chunked(exchange: Exchange) -> None:
        await exchange.send(h11.Response(status_code=200, headers=[]))
        await exchange.send(h11.Data(data=b"a" * 1000))
        async with asyncio.timeout(10):
            await client_got_bytes.wait()
        for _ in range(200):
            await exchange.send(h11.Data(data=b"b" * 10000))
        await exchange.send(h11.EndOfMessage())

    backend = await backend_factory(chunked)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    body = b""
    async with await client(proxy.port) as http, http.stream("GET", "/") as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        async for data in response.aiter_raw():
            body += data
            client_got_bytes.set()
        assert len(body) == 1000 + 200 * 10000
        # The backend connection is reused afterwards: the message ended where it should.
        assert (await http.get("/")).status_code == 200
    assert backend.connections == 1


async def test_close_delimited_response_becomes_chunked(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    async def until_close(exchange: Exchange) -> None:
        await exchange.raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")

    backend = await backend_factory(until_close)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    async with await client(proxy.port) as http:
        response = await http.get("/")
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert response.text == "until the end"
        assert (await http.get("/")).text == "until the end"  # the client connection stays


async def test_large_chunked_upload_is_streamed(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    """The client sends 20 MB chunked, pausing after 2 MB until the backend has received
    1 MB: a proxy buffering the request would never deliver it."""
    backend_got_bytes = asyncio.Event()

    async def count(exchange: Exchange) -> None:
        assert exchange.seen.header("Transfer-Encoding") == "chunked"
        total = 0
        async for data in exchange.chunks():
            total += len(data)
            if total >= MB:
                backend_got_bytes.set()
        exchange.seen.body = b""  # do not keep 20 MB around
        await exchange.respond(200, [], str(total).encode())

    backend = await backend_factory(count)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    piece = b"u" * MB

    async def upload() -> AsyncIterator[bytes]:
        for index in range(20):
            if index == 2:
                async with asyncio.timeout(10):
                    await backend_got_bytes.wait()
            yield piece

    async with await client(proxy.port) as http:
        response = await http.post("/upload", content=upload())
    assert response.status_code == 200
    assert response.text == str(20 * MB)
    assert proxy.records[-1].bytes_received == 20 * MB


async def test_content_length_upload_is_passed_with_its_length(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 300000\r\n\r\n")
    for _ in range(3):
        writer.write(b"z" * 100000)
        await writer.drain()
    async with asyncio.timeout(5):
        response = await read_response(reader)
    writer.close()
    assert response.body == b"backend POST / 300000"
    assert backend.seen[0].header("Content-Length") == "300000"
    assert backend.seen[0].header("Transfer-Encoding") is None


async def test_early_response_closes_the_client_connection(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    """The backend answers before the request body arrived: the answer is relayed, and both
    connections are closed (the rest of the body is not waited for)."""

    async def too_large(exchange: Exchange) -> None:
        await exchange.raw(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!")

    backend = await backend_factory(too_large)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000000\r\n\r\nstart")
    async with asyncio.timeout(5):
        response = await read_response(reader)
        assert response.status == 413 and response.body == b"big!"
        assert response.header("Connection") == "close"
        assert await read_to_end(reader) == b""
    writer.close()
    assert proxy.server.pool.idle_count() == 0


async def test_client_gone_while_waiting_for_the_response(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend_saw_close = asyncio.Event()

    async def wait_for_close(exchange: Exchange) -> None:
        assert await read_to_end(exchange.reader) == b""  # the proxy hung up on us
        backend_saw_close.set()
        exchange.close = True

    backend = await backend_factory(wait_for_close)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    _reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
    await backend.arrived.wait()
    writer.close()
    async with asyncio.timeout(5):
        await backend_saw_close.wait()
        while not proxy.records:
            await asyncio.sleep(0.01)
    assert proxy.records[0].status == 499
    assert proxy.records[0].error == "client_closed"


async def test_client_gone_in_the_middle_of_a_response(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend_saw_close = asyncio.Event()

    async def endless(exchange: Exchange) -> None:
        await exchange.send(h11.Response(status_code=200, headers=[]))
        await exchange.send(h11.Data(data=b"first"))
        assert await read_to_end(exchange.reader) == b""
        backend_saw_close.set()
        exchange.close = True

    backend = await backend_factory(endless)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
    async with asyncio.timeout(5):
        await reader.readuntil(b"first")
        writer.close()
        await backend_saw_close.wait()
        while not proxy.records:
            await asyncio.sleep(0.01)
    assert proxy.records[0].status == 200
    assert proxy.records[0].error == "client_closed"


async def test_backend_gone_in_the_middle_of_a_response(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    async def truncated(exchange: Exchange) -> None:
        await exchange.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")

    backend = await backend_factory(truncated)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
    async with asyncio.timeout(5):
        head = await read_response(reader, head_only=True)
        assert head.status == 200 and head.header("Content-Length") == "100"
        assert await read_to_end(reader) == b"only this"  # then closed: the client can tell
    writer.close()
    assert proxy.records[0].error == "backend_closed_mid_response"


# -- WebSockets -----------------------------------------------------------------------------------


async def test_websocket_echo_through_the_proxy(proxy_factory: StartProxy) -> None:
    async def echo(connection: websockets.asyncio.server.ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with websockets.asyncio.server.serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        routes = Routes()
        routes.add("127.0.0.1", Endpoint("127.0.0.1", port))  # Host: 127.0.0.1:<port>
        proxy = await proxy_factory(routes)
        async with websockets.asyncio.client.connect(f"ws://127.0.0.1:{proxy.port}/chat") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            payload = os.urandom(100_000)  # incompressible
            await ws.send(payload)
            assert await ws.recv() == payload
            for i in range(20):
                await ws.send(f"m{i}")
            assert [await ws.recv() for _ in range(20)] == [f"m{i}" for i in range(20)]
        async with asyncio.timeout(5):
            while not proxy.records:
                await asyncio.sleep(0.01)
        record = proxy.records[-1]
        assert record.status == 101
        assert record.bytes_received > 100000 and record.bytes_sent > 100000
        assert proxy.metric("overcast_router_websocket_connections") == 0


async def test_websocket_refused_by_backend_is_answered_and_closed(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    response, rest = await raw_request(
        proxy.port,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    assert response.status == 200
    assert response.header("Connection") == "close"
    assert rest == b""
    assert backend.seen[0].header("Upgrade") == "websocket"


# -- access records, metrics, stop ----------------------------------------------------------------


async def test_access_records(backend_factory: StartBackend, proxy_factory: StartProxy) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    async with await client(proxy.port) as http:
        await http.post(
            "/p?q=1", content=b"12345", headers={"User-Agent": "tests", "Referer": "http://r/"}
        )
        await http.get("/", headers={"Host": "unknown.test"})
    proxied, answered = proxy.records
    assert proxied.method == "POST"
    assert proxied.target == "/p?q=1"
    assert proxied.host == "app.test"
    assert proxied.status == 200
    assert proxied.bytes_received == 5
    assert proxied.bytes_sent == len(b"backend POST /p?q=1 5")
    assert proxied.user_agent == "tests" and proxied.referer == "http://r/"
    assert proxied.endpoint == backend.endpoint
    assert proxied.error is None
    assert proxied.started_at > 1e9 and proxied.duration_seconds >= 0
    assert answered.status == 404 and answered.error == "unknown_route"
    assert answered.endpoint is None


async def test_a_failing_access_sink_breaks_nothing(backend_factory: StartBackend) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)

    def broken(record: AccessRecord) -> None:
        raise RuntimeError("sink down")

    server = ProxyServer(routes, access=broken, ready=True)
    port = await server.start("127.0.0.1", 0)
    try:
        async with await client(port) as http:
            assert (await http.get("/")).status_code == 200
            assert (await http.get("/")).status_code == 200
    finally:
        await server.stop()


async def test_metrics(backend_factory: StartBackend, proxy_factory: StartProxy) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    async with await client(proxy.port) as http:
        await http.get("/")
        await http.get("/")
        await http.get("/", headers={"Host": "unknown.test"})
        assert proxy.metric("overcast_router_open_connections") == 1
    assert proxy.metric("overcast_router_requests_total", status_class="2xx") == 2
    assert proxy.metric("overcast_router_requests_total", status_class="4xx") == 1
    assert proxy.metric("overcast_router_request_seconds_count") == 3
    assert proxy.metric("overcast_router_answers_total", reason="unknown_route") == 1
    assert proxy.metric("overcast_router_backend_connections") == 1
    other = ProxyServer(routes)
    assert other.registry is not proxy.server.registry


async def test_stop_drains_requests_in_flight(backend_factory: StartBackend) -> None:
    release = asyncio.Event()

    async def held(exchange: Exchange) -> None:
        await release.wait()
        await exchange.respond(200, [], b"finished")

    backend = await backend_factory(held)
    routes = Routes()
    routes.add("app.test", backend)
    server = ProxyServer(routes, ready=True, options=ProxyOptions(drain_seconds=5))
    port = await server.start("127.0.0.1", 0)
    async with await client(port) as http:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        in_flight = asyncio.create_task(http.get("/"))
        await backend.arrived.wait()
        stopping = asyncio.create_task(server.stop())
        async with asyncio.timeout(5):
            assert await read_to_end(idle_reader) == b""  # idle connections are closed at once
        idle_writer.close()
        assert not stopping.done()
        release.set()
        response = await in_flight
        assert response.status_code == 200 and response.text == "finished"
        assert response.headers["Connection"] == "close"
        async with asyncio.timeout(5):
            await stopping
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


# -- the fast path (a pooled connection; handed to the task when anything is unusual) -----------


async def _warm_then(
    backend_factory: StartBackend,
    proxy_factory: StartProxy,
    second: Callable[[Exchange], Awaitable[None]],
    **options: float,
) -> tuple[httpx.Response, Proxy, int]:
    """A first request warms the pool; the second (on the pooled connection, so on the fast
    path) is answered by `second`. The response, the proxy and backend connections made."""

    async def handler(exchange: Exchange) -> None:
        await exchange.body()
        if exchange.seen.target == "/warm":
            await exchange.respond(200, [], b"warm")
        else:
            await second(exchange)

    backend = await backend_factory(handler)
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes, **options)
    async with await client(proxy.port) as http:
        assert (await http.get("/warm")).status_code == 200
        response = await http.get("/second")
        await response.aread()
    return response, proxy, backend.connections


async def test_fast_path_relays_a_response_split_over_several_writes(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    async def slow(exchange: Exchange) -> None:
        await exchange.raw(b"HTTP/1.1 200 OK\r\nContent-Le")
        await asyncio.sleep(0.05)
        await exchange.raw(b"ngth: 5\r\nX-A: b\r\n\r\nhel")
        await asyncio.sleep(0.05)
        await exchange.raw(b"lo")
        exchange.close = False

    response, proxy, connections = await _warm_then(backend_factory, proxy_factory, slow)
    assert response.status_code == 200
    assert response.content == b"hello"
    assert response.headers["X-A"] == "b"
    assert connections == 1
    record = proxy.records[-1]
    assert (record.status, record.bytes_sent, record.error) == (200, 5, None)
    assert record.endpoint is not None


async def test_fast_path_hands_a_silent_backend_to_the_timeout(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    async def silent(exchange: Exchange) -> None:
        await asyncio.Event().wait()

    response, proxy, _ = await _warm_then(
        backend_factory, proxy_factory, silent, backend_response_timeout=0.3
    )
    assert response.status_code == 504
    assert proxy.records[-1].error == "gateway_timeout"


@pytest.mark.parametrize("size", [0, 70_000, 3 * MB])
async def test_fast_path_hands_over_long_and_chunked_responses(
    backend_factory: StartBackend, proxy_factory: StartProxy, size: int
) -> None:
    async def chunked(exchange: Exchange) -> None:
        await exchange.send(h11.InformationalResponse(status_code=103, headers=[]))
        await exchange.send(h11.Response(status_code=200, headers=[]))
        if size:
            await exchange.send(h11.Data(data=b"z" * size))
        await exchange.send(h11.EndOfMessage())

    response, proxy, connections = await _warm_then(backend_factory, proxy_factory, chunked)
    assert response.status_code == 200
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.content == b"z" * size
    assert proxy.records[-1].bytes_sent == size
    assert connections == 1


async def test_fast_path_hands_an_invalid_response_to_the_task(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    async def invalid(exchange: Exchange) -> None:
        await exchange.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx")

    response, proxy, _ = await _warm_then(backend_factory, proxy_factory, invalid)
    assert response.status_code == 502
    assert proxy.records[-1].error == "endpoint_failure"
    assert proxy.metric("overcast_router_backend_errors_total", kind="protocol") == 1


async def test_fast_path_does_not_pool_a_connection_with_bytes_after_the_response(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    async def extra(exchange: Exchange) -> None:
        await exchange.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE")
        exchange.close = False

    response, proxy, _ = await _warm_then(backend_factory, proxy_factory, extra)
    assert response.content == b"ok"
    assert proxy.server.pool.idle_count() == 0

"""The request-smuggling corpus: requests that could be framed (or routed) two ways. Each is
sent on a raw connection at once; the proxy must refuse it (400, or 431 for size limits),
close the connection, and forward nothing: the backend sees no connection at all."""

from __future__ import annotations

import pytest

from tests.integration.router.backends import Routes, raw_request
from tests.integration.router.conftest import StartBackend, StartProxy

H = b"Host: app.test\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"

CASES: dict[str, tuple[bytes, int]] = {
    # -- Content-Length against Transfer-Encoding --------------------------------------------
    "cl-then-te": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n" + CHUNKED + b"\r\n0\r\n\r\n",
        400,
    ),
    "te-then-cl": (
        b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"Content-Length: 4\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-then-cl-zero": (
        b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"Content-Length: 0\r\n\r\n0\r\n\r\n",
        400,
    ),
    # -- Content-Length -------------------------------------------------------------------------
    "cl-duplicate-same": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    "cl-duplicate-different": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        400,
    ),
    "cl-list": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    "cl-plus": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc", 400),
    "cl-negative": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    "cl-hex": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x3\r\n\r\nabc", 400),
    "cl-empty": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n", 400),
    "cl-overflow": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n",
        400,
    ),
    # -- Transfer-Encoding ----------------------------------------------------------------------
    "te-gzip-chunked": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-chunked-gzip": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-two-lines": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n" + CHUNKED + b"\r\n0\r\n\r\n",
        400,
    ),
    "te-chunked-twice": (b"POST / HTTP/1.1\r\n" + H + CHUNKED + CHUNKED + b"\r\n0\r\n\r\n", 400),
    "te-xchunked": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-identity": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\nabc",
        400,
    ),
    "te-vertical-tab": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-space-before-colon": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-in-http10": (
        b"POST / HTTP/1.0\r\n" + H + CHUNKED + b"\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "te-folded": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    # -- line structure -------------------------------------------------------------------------
    "obs-fold": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    "nul-in-value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    "bare-cr-in-value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    "bare-lf-lines": (b"GET / HTTP/1.1\nHost: app.test\n\n", 400),
    "bare-lf-one-line": (b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\nX-B: 2\r\n\r\n", 400),
    "invalid-name": (b"GET / HTTP/1.1\r\n" + H + b"X(A): 1\r\n\r\n", 400),
    "space-in-name": (b"GET / HTTP/1.1\r\n" + H + b"X A: 1\r\n\r\n", 400),
    "empty-name": (b"GET / HTTP/1.1\r\n" + H + b": 1\r\n\r\n", 400),
    "control-in-target": (b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "lowercase-version": (b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    "http2-version": (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 400),
    "http09-request-line": (b"GET /\r\n\r\n", 400),
    "h2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    # -- chunked bodies -------------------------------------------------------------------------
    "chunk-size-not-hex": (b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"\r\nzz\r\n\r\n", 400),
    "chunk-size-0x": (
        b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"\r\n0x3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "chunk-size-space": (
        b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"\r\n3 \r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "chunk-size-negative": (
        b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"\r\n-3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "chunk-size-overflow": (
        b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "chunk-data-overrun": (
        b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"\r\n3\r\nabcdef\r\n0\r\n\r\n",
        400,
    ),
    "chunk-bare-lf": (b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"\r\n3\nabc\n0\n\n", 400),
    "chunk-extension-nul": (
        b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"\r\n3;\x00\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    # -- Host and target ------------------------------------------------------------------------
    "host-missing": (b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    "host-missing-http10": (b"GET / HTTP/1.0\r\n\r\n", 400),
    "host-duplicate": (b"GET / HTTP/1.1\r\n" + H + b"Host: other.test\r\n\r\n", 400),
    "host-invalid": (b"GET / HTTP/1.1\r\nHost: app.test/evil\r\n\r\n", 400),
    "host-with-userinfo": (b"GET / HTTP/1.1\r\nHost: user@app.test\r\n\r\n", 400),
    "absolute-form-other-host": (b"GET http://other.test/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "absolute-form-userinfo": (b"GET http://x@app.test/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "asterisk-not-options": (b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    "authority-form": (b"GET app.test:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    "upgrade-with-body": (
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    # -- limits ---------------------------------------------------------------------------------
    "header-too-large": (b"GET / HTTP/1.1\r\n" + H + b"X-A: " + b"a" * 20000 + b"\r\n\r\n", 431),
    "target-too-large": (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n" + H + b"\r\n", 431),
    "too-many-headers": (
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
        431,
    ),
    "unterminated-huge-head": (b"GET / HTTP/1.1\r\n" + H + b"X-A: " + b"a" * 40000, 431),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_ambiguous_request_is_refused_and_nothing_forwarded(
    case: str, backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    data, status = CASES[case]
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    routes.add("other.test", backend)
    proxy = await proxy_factory(routes)
    response, rest = await raw_request(proxy.port, data)
    assert response.status == status, response.body
    assert response.header("Connection") == "close"
    assert response.header("X-Cf-Routererror") in ("bad_request", "headers_too_large")
    assert rest == b""  # closed after the answer, nothing else said
    assert backend.seen == []
    assert backend.connections == 0
    assert routes.asked == []
    assert proxy.records[-1].status == status
    assert proxy.records[-1].endpoint is None


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25


async def test_connect_is_refused(backend_factory: StartBackend, proxy_factory: StartProxy) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    response, _ = await raw_request(
        proxy.port, b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n"
    )
    assert response.status == 405
    assert backend.connections == 0


async def test_a_valid_request_pipelined_after_a_refused_one_is_not_read(
    backend_factory: StartBackend, proxy_factory: StartProxy
) -> None:
    backend = await backend_factory()
    routes = Routes()
    routes.add("app.test", backend)
    proxy = await proxy_factory(routes)
    smuggled = b"GET /admin HTTP/1.1\r\n" + H + b"\r\n"
    data = b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n" + CHUNKED + b"\r\n" + smuggled
    response, rest = await raw_request(proxy.port, data)
    assert response.status == 400
    assert rest == b""
    assert backend.seen == []

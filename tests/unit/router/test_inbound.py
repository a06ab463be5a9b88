"""Client requests without sockets: what `RequestReader` makes of bytes, and the head the proxy
sends on (hop-by-hop fields removed, forwarding fields added)."""

from __future__ import annotations

import pytest

from overcast.router.inbound import Request, RequestReader, render_request_head


def reader(**limits: int) -> RequestReader:
    return RequestReader(
        max_header_bytes=limits.get("max_header_bytes", 16384),
        max_headers=limits.get("max_headers", 100),
        clock=lambda: 5.0,
        wall_clock=lambda: 1_700_000_000.0,
        on_event=lambda: None,
    )


def one(data: bytes, **limits: int) -> Request:
    parsed = reader(**limits)
    assert parsed.feed(data) == b""
    assert len(parsed.requests) == 1
    return parsed.requests[0]


def sent_head(request: Request, client: str = "192.0.2.7") -> list[bytes]:
    head = render_request_head(request, client, b"http")
    assert head.endswith(b"\r\n\r\n")
    return head[:-4].split(b"\r\n")


def test_a_simple_request() -> None:
    request = one(b"GET /a/b?c HTTP/1.1\r\nHost: App.Test:8080\r\nAccept: */*\r\n\r\n")
    assert request.head_done and request.complete and request.error is None
    assert request.method == b"GET" and request.target == b"/a/b?c"
    assert request.host == "app.test" and request.path == "/a/b"
    assert request.keep_alive and request.http11
    assert request.started == 5.0 and request.started_wall == 1_700_000_000.0
    lines = sent_head(request)
    assert lines[0] == b"GET /a/b?c HTTP/1.1"
    assert lines[1:3] == [b"Host: App.Test:8080", b"Accept: */*"]
    assert b"X-Forwarded-For: 192.0.2.7" in lines
    assert b"X-Forwarded-Proto: http" in lines
    assert f"X-Request-Id: {request.request_id}".encode() in lines
    assert f"X-Vcap-Request-Id: {request.request_id}".encode() in lines


def test_hop_by_hop_fields_and_those_named_in_connection_are_removed() -> None:
    request = one(
        b"GET / HTTP/1.1\r\nHost: a.test\r\n"
        b"Connection: keep-alive, X-Private, x-other, Host\r\n"
        b"X-Private: 1\r\nX-Other: 2\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\n"
        b"Proxy-Authorization: Basic x\r\nTE: trailers\r\nTrailer: X-T\r\n"
        b"Upgrade: something\r\nX-Kept: 3\r\n\r\n"
    )
    names = [line.split(b":")[0].lower() for line in sent_head(request)[1:]]
    assert names == [
        b"host",
        b"x-kept",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-request-id",
        b"x-vcap-request-id",
    ]


def test_forwarding_fields_are_replaced_and_appended() -> None:
    request = one(
        b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 1.1.1.1\r\n"
        b"X-Forwarded-For: 2.2.2.2\r\nX-Forwarded-Proto: https\r\nX-Request-Id: mine\r\n"
        b"X-Request-Id: second\r\nX-Vcap-Request-Id: forged\r\n\r\n"
    )
    lines = sent_head(request, "10.1.1.1")
    assert b"X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.1.1.1" in lines
    assert b"X-Forwarded-Proto: http" in lines
    assert b"X-Request-Id: mine" in lines and b"X-Vcap-Request-Id: mine" in lines
    assert sum(line.lower().startswith(b"x-forwarded-proto") for line in lines) == 1
    assert sum(line.lower().startswith(b"x-vcap-request-id") for line in lines) == 1


@pytest.mark.parametrize("value", [b"x" * 201, b"with space", b"\xff\xfe"])
def test_malformed_request_id_is_replaced(value: bytes) -> None:
    request = one(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Request-Id: " + value + b"\r\n\r\n")
    assert request.request_id is not None and len(request.request_id) == 36


def test_content_length_body_is_passed_with_its_length() -> None:
    request = one(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello")
    assert b"".join(request.body) == b"hello" and request.bytes_in == 5
    assert b"Content-Length: 5" in sent_head(request)


def test_chunked_body_is_decoded_and_reframed_as_chunked() -> None:
    request = one(
        b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: dropped\r\n\r\n"
    )
    assert request.chunked and request.complete
    assert b"".join(request.body) == b"abcde"
    lines = sent_head(request)
    assert b"Transfer-Encoding: chunked" in lines
    assert not any(line.lower().startswith(b"content-length") for line in lines)
    assert not any(b"X-Trailer" in line for line in lines)


def test_body_arriving_in_pieces() -> None:
    parsed = reader()
    parsed.feed(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 6\r\n\r\nabc")
    request = parsed.requests[0]
    assert request.head_done and not request.complete
    parsed.feed(b"def")
    assert request.complete and b"".join(request.body) == b"abcdef"


def test_head_split_anywhere() -> None:
    data = b"GET /long/target HTTP/1.1\r\nHost: a.test\r\nX-Name: value\r\n\r\n"
    parsed = reader()
    for index in range(len(data)):
        parsed.feed(data[index : index + 1])
    request = parsed.requests[0]
    assert request.complete and request.target == b"/long/target"
    assert (b"X-Name", b"value") in request.fields


def test_pipelined_requests_queue_in_order() -> None:
    parsed = reader()
    parsed.feed(
        b"GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\n\r\nx"
        b"GET /3 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    )
    assert [r.target for r in parsed.requests] == [b"/1", b"/2", b"/3"]
    assert [r.keep_alive for r in parsed.requests] == [True, True, False]


def test_http10_keep_alive_and_expect() -> None:
    request = one(b"GET / HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n")
    assert request.keep_alive and not request.http11
    request = one(b"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n")
    assert not request.keep_alive
    request = one(b"PUT / HTTP/1.1\r\nHost: a.test\r\nExpect: 100-Continue\r\n\r\n")
    assert request.expect_continue
    assert b"Expect: 100-Continue" in sent_head(request)


def test_websocket_upgrade_hands_over_the_rest() -> None:
    parsed = reader()
    rest = parsed.feed(
        b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n\x81\x05hello"
    )
    assert parsed.upgraded and rest == b"\x81\x05hello"
    request = parsed.requests[0]
    assert request.websocket
    lines = sent_head(request)
    assert b"Connection: Upgrade" in lines and b"Upgrade: websocket" in lines
    assert b"Sec-WebSocket-Key: k" in lines
    assert parsed.feed(b"more") == b""  # no longer parsed


def test_other_upgrades_stay_http() -> None:
    parsed = reader()
    rest = parsed.feed(
        b"GET /1 HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: a.test\r\n\r\n"
    )
    assert rest == b"" and not parsed.upgraded
    assert [r.target for r in parsed.requests] == [b"/1", b"/2"]
    assert not parsed.requests[0].websocket
    assert not any(line.startswith(b"Upgrade") for line in sent_head(parsed.requests[0]))


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 200 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: 1\r\n" * 10 + b"\r\n", 431),
    ],
)
def test_refusals(data: bytes, status: int) -> None:
    parsed = reader(max_header_bytes=128, max_headers=8)
    parsed.feed(data)
    assert parsed.broken
    request = parsed.requests[-1]
    assert request.error is not None and request.error[0] == status
    assert parsed.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == b""
    assert len(parsed.requests) == 1  # nothing parsed after a refusal


def test_a_head_that_never_ends_is_refused_while_it_arrives() -> None:
    parsed = reader(max_header_bytes=1000)
    parsed.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ")
    for _ in range(3):
        parsed.feed(b"v" * 400)
    assert parsed.broken
    assert parsed.requests[0].error is not None and parsed.requests[0].error[0] == 431


def test_refusal_after_a_complete_request_is_a_new_request() -> None:
    parsed = reader()
    parsed.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    first, second = parsed.requests
    assert first.complete and first.error is None
    assert second.error is not None and second.error[0] == 400


def test_bad_chunk_in_a_body_under_way() -> None:
    parsed = reader()
    parsed.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    request = parsed.requests[0]
    assert request.head_done and request.error is None
    parsed.feed(b"zz\r\n")
    assert request.error is not None and request.error[0] == 400
    assert len(parsed.requests) == 1

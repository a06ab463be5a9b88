"""The data plane's HTTP/1.1 pieces without I/O: response heads, chunked bodies, targets,
hosts, forwarding fields and the router's own answers."""

from __future__ import annotations

import pytest

from overcast.router import http1
from overcast.router.http1 import BodyKind, ChunkedDecoder, ProtocolError, parse_response_head

# -- response heads -------------------------------------------------------------------------------


def test_response_head_fields_in_order_without_hop_by_hop() -> None:
    head = parse_response_head(
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/plain\r\n"
        b"Connection: keep-alive, X-Private\r\n"
        b"X-Private: 1\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"Proxy-Authenticate: Basic\r\n"
        b"Trailer: X-T\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"Upgrade: h2c\r\n"
        b"X-Request-Id: theirs\r\n"
        b"Set-Cookie: a=1\r\n"
        b"Set-Cookie: b=2  "
    )
    assert head.status == 200 and head.reason == b"OK" and head.minor == 1
    assert head.fields == [
        (b"Content-Type", b"text/plain"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    ]
    assert head.chunked and head.transfer_encoding and head.keep_alive
    assert head.upgrade == b"h2c"


def test_connection_never_strips_host_and_close_names_nothing() -> None:
    head = parse_response_head(b"HTTP/1.1 200 OK\r\nConnection: close, host\r\nHost: x")
    assert head.fields == [(b"Host", b"x")]
    assert not head.keep_alive


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK", True),
        (b"HTTP/1.1 200 OK\r\nConnection: Close", False),
        (b"HTTP/1.0 200 OK", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive", True),
    ],
)
def test_response_keep_alive(head: bytes, keep_alive: bool) -> None:
    assert parse_response_head(head).keep_alive is keep_alive


def test_status_line_without_reason() -> None:
    assert parse_response_head(b"HTTP/1.1 204").status == 204
    assert parse_response_head(b"HTTP/1.1 204 ").reason == b""


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4",
        b"HTTP/1.1 200 OK\r\nContent-Length: -3",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x3",
        b"HTTP/1.1 200 OK\r\nContent-Length: ",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip, chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded",
        b"HTTP/1.1 200 OK\r\nX-A: a\rb",
        b"HTTP/1.1 200 OK\r\nX-A: a\nb",
        b"HTTP/1.1 200 OK\r\nX-A: a\x00b",
        b"HTTP/1.1 200 OK\r\nX-A : 1",
        b"HTTP/1.1 200 OK\r\nX(A): 1",
        b"HTTP/1.1 200 OK\r\nno colon",
        b"HTTP/1.1 200 OK\r\n: empty",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/2 200 OK",
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 099 Too low",
        b"HTTP/1.1  200 OK",
        b"http/1.1 200 OK",
        b"HTTP/1.1 200 O\rK",
    ],
)
def test_ambiguous_response_heads_are_refused(head: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_response_head(head)


def test_repeated_equal_content_lengths_are_one() -> None:
    head = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3, 3")
    assert head.content_length == 3
    assert head.fields == []


@pytest.mark.parametrize(
    ("head", "method", "kind"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5", b"GET", BodyKind.LENGTH),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5", b"HEAD", BodyKind.NONE),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", b"GET", BodyKind.CHUNKED),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked", b"GET", BodyKind.CHUNKED),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip", b"GET", BodyKind.CLOSE),
        (b"HTTP/1.1 200 OK", b"GET", BodyKind.CLOSE),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 5", b"GET", BodyKind.NONE),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5", b"GET", BodyKind.NONE),
        (b"HTTP/1.1 100 Continue", b"POST", BodyKind.NONE),
    ],
)
def test_body_kind(head: bytes, method: bytes, kind: BodyKind) -> None:
    assert parse_response_head(head).body_kind(method) is kind


def test_render_head() -> None:
    assert http1.render_head(b"HTTP/1.1 200 OK", [(b"A", b"1"), (b"B", b"2")]) == (
        b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n"
    )


# -- chunked bodies -------------------------------------------------------------------------------

BODY = b'5\r\nhello\r\n6;name=value;q="a\\"b"\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n'


def test_chunked_body_at_once() -> None:
    decoder = ChunkedDecoder()
    assert b"".join(decoder.feed(BODY + b"NEXT")) == b"hello world"
    assert decoder.done
    assert decoder.rest == b"NEXT"


def test_chunked_body_byte_by_byte() -> None:
    decoder = ChunkedDecoder()
    out = b""
    for index in range(len(BODY)):
        assert not decoder.done
        out += b"".join(decoder.feed(BODY[index : index + 1]))
    assert decoder.done and decoder.rest == b""
    assert out == b"hello world"


def test_chunked_body_after_done_is_rest() -> None:
    decoder = ChunkedDecoder()
    decoder.feed(b"0\r\n\r\n")
    assert decoder.feed(b"more") == []
    assert decoder.rest == b"more"


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\n",
        b"0x5\r\nhello\r\n",
        b"-5\r\nhello\r\n",
        b" 5\r\nhello\r\n",
        b"5 \r\nhello\r\n",
        b"\r\nhello\r\n",
        b"11111111111111111\r\n",  # 17 hex digits
        b"5\nhello\r\n",
        b"5\r\nhelloX\r\n",
        b"5\r\nhello\rX",
        b"5;\x00\r\nhello\r\n",
        b"5;=\r\nhello\r\n",
        b"0\r\nbad trailer\r\n\r\n",
        b"0\r\nX: a\x00\r\n\r\n",
        b"0\r\nX: 1\n\r\n",
        b"5" * 5000,
    ],
)
def test_invalid_chunked_bodies(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        ChunkedDecoder().feed(body)


def test_chunked_trailer_section_is_bounded() -> None:
    decoder = ChunkedDecoder(max_trailer_bytes=100)
    with pytest.raises(ProtocolError):
        decoder.feed(b"0\r\n" + b"X-A: 1234567890\r\n" * 10)


def test_chunk_framing() -> None:
    assert b"".join(http1.chunk(b"x" * 26)) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    decoder = ChunkedDecoder()
    assert decoder.feed(b"".join(http1.chunk(b"abc")) + http1.LAST_CHUNK) == [b"abc"]
    assert decoder.done


# -- requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"abc-123", "abc-123"),
        (b"x" * 200, "x" * 200),
        (b"x" * 201, None),
        (b"", None),
        (None, None),
        (b"has space", None),
        (b"tab\there", None),
        (b"caf\xc3\xa9", None),
        (b"a\x7f", None),
    ],
)
def test_valid_request_id(value: bytes | None, expected: str | None) -> None:
    assert http1.valid_request_id(value) == expected


def test_new_request_ids_are_uuids() -> None:
    first, second = http1.new_request_id(), http1.new_request_id()
    assert first != second and len(first) == 36 and first.count("-") == 4


def test_forwarded_for_appends_the_peer() -> None:
    assert http1.forwarded_for(None, "10.0.0.1") == b"10.0.0.1"
    assert http1.forwarded_for(b"", "10.0.0.1") == b"10.0.0.1"
    assert http1.forwarded_for(b"1.1.1.1, 2.2.2.2", "::1") == b"1.1.1.1, 2.2.2.2, ::1"


def test_connection_tokens() -> None:
    assert http1.connection_tokens(b"Keep-Alive, X-Foo ,,\tUpgrade") == {
        b"keep-alive",
        b"x-foo",
        b"upgrade",
    }


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"App.Example.COM", "app.example.com"),
        (b"app.example.com:8080", "app.example.com"),
        (b"app.example.com:", "app.example.com"),
        (b"10.0.0.1:80", "10.0.0.1"),
        (b"[::1]:8080", "[::1]"),
        (b"my_app.test", "my_app.test"),
        (b"", None),
        (b"a b", None),
        (b"a/b", None),
        (b"user@host", None),
        (b"host:80:80", None),
        (b"host:123456", None),
        (b"[::1", None),
    ],
)
def test_routing_host(host: bytes, expected: str | None) -> None:
    assert http1.routing_host(host) == expected


@pytest.mark.parametrize(
    ("target", "method", "forward", "path"),
    [
        (b"/a/b?c=d", b"GET", b"/a/b?c=d", "/a/b"),
        (b"/a#frag", b"GET", b"/a#frag", "/a"),
        (b"/", b"GET", b"/", "/"),
        (b"*", b"OPTIONS", b"*", "/"),
        (b"http://app.test/x?y", b"GET", b"/x?y", "/x"),
        (b"HTTP://APP.TEST:80/x", b"GET", b"/x", "/x"),
        (b"https://app.test:80", b"GET", b"/", "/"),
        (b"http://app.test:80?q", b"GET", b"/?q", "/"),
    ],
)
def test_split_target(target: bytes, method: bytes, forward: bytes, path: str) -> None:
    host = b"app.test:80" if b":80" in target.lower() else b"app.test"
    split = http1.split_target(target, method, host)
    assert (split.forward, split.path) == (forward, path)


@pytest.mark.parametrize(
    ("target", "method"),
    [
        (b"*", b"GET"),
        (b"app.test:80", b"GET"),
        (b"http://other.test/", b"GET"),
        (b"http://user@app.test/", b"GET"),
        (b"ftp://app.test/", b"GET"),
        (b"http://app.test:81/", b"GET"),
    ],
)
def test_split_target_refusals(target: bytes, method: bytes) -> None:
    with pytest.raises(ProtocolError):
        http1.split_target(target, method, b"app.test")


# -- the router's answers -------------------------------------------------------------------------


def test_router_answer() -> None:
    head, body = http1.router_answer(
        404, "404 Not Found: x\n", error="unknown_route", request_id="r1", close=False
    )
    assert head == (
        b"HTTP/1.1 404 Not Found\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 17\r\n"
        b"X-Content-Type-Options: nosniff\r\n"
        b"X-Cf-Routererror: unknown_route\r\n"
        b"X-Request-Id: r1\r\n\r\n"
    )
    assert body == b"404 Not Found: x\n"
    closing, _ = http1.router_answer(502, "x", error=None, request_id=None, close=True)
    assert closing.endswith(b"Connection: close\r\n\r\n")
    kept, _ = http1.router_answer(
        503, "x", error=None, request_id=None, close=False, http10_keep_alive=True
    )
    assert kept.endswith(b"Connection: keep-alive\r\n\r\n")

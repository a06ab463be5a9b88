"""Client requests: bytes in, `Request`s out, in order, with nothing ambiguous let through.

llhttp (`httptools`) parses, with none of its leniency flags set: it already refuses both
Content-Length and Transfer-Encoding, repeated Content-Length, obsolete line folding, NUL and
other controls, bare CR or LF, invalid header names, whitespace before a colon and invalid chunk
sizes. `RequestReader` adds what llhttp lets through: a Transfer-Encoding other than exactly
`chunked` (or any in HTTP/1.0), a missing, repeated or malformed Host, an absolute-form target
whose authority is not the Host, an HTTP version other than 1.0 and 1.1, CONNECT, an Upgrade
with a body, and the size limits (431). A refused request ends the connection's parsing: it is
answered and the connection closed, so nothing after it can be misread."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import NoReturn

import httptools

from overcast.router import http1
from overcast.router.endpoints import Endpoint
from overcast.router.http1 import ProtocolError

# An answer of the router's own: (status, X-Cf-Routererror, plain-text body).
Answer = tuple[int, str, str]

TOO_LARGE: Answer = (431, "headers_too_large", "431 Request Header Fields Too Large\n")


def bad_request(reason: str) -> Answer:
    return (400, "bad_request", f"400 Bad Request: {reason}\n")


# Request fields the reader looks at; all but the last group are not forwarded as received.
_HOST, _CONTENT_LENGTH, _TE, _CONNECTION, _UPGRADE, _XFF, _REQUEST_ID, _DROP = range(8)
_EXPECT, _USER_AGENT, _REFERER = range(8, 11)
_SPECIAL: dict[bytes, int] = {
    **{name: _DROP for name in http1.HOP_BY_HOP | http1.REQUEST_REPLACED},
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TE,
    b"connection": _CONNECTION,
    b"upgrade": _UPGRADE,
    b"x-forwarded-for": _XFF,
    b"x-request-id": _REQUEST_ID,
    b"expect": _EXPECT,
    b"user-agent": _USER_AGENT,
    b"referer": _REFERER,
}


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request the proxy refuses."""


class Request:
    """One client request, from its first byte to its access record."""

    __slots__ = (
        "body",
        "body_buffered",
        "bytes_in",
        "bytes_out",
        "chunked",
        "complete",
        "connection",
        "content_length",
        "continued",
        "endpoint",
        "error",
        "expect_continue",
        "fields",
        "forward_target",
        "head_done",
        "head_size",
        "header_count",
        "host",
        "host_value",
        "http11",
        "keep_alive",
        "method",
        "path",
        "problem",
        "referer",
        "request_id",
        "started",
        "started_wall",
        "status",
        "target",
        "te",
        "upgrade",
        "user_agent",
        "websocket",
        "xff",
        "xrid",
    )

    def __init__(self, started: float, started_wall: float) -> None:
        self.started = started
        self.started_wall = started_wall
        self.method = b""
        self.target = b""  # as received
        self.forward_target = b""  # as sent on (origin-form)
        self.path = "/"  # as routed
        # The fields forwarded as received, in order (hop-by-hop and replaced ones left out).
        self.fields: list[tuple[bytes, bytes]] = []
        self.host_value: bytes | None = None
        self.host = ""  # lower-cased, no port
        self.content_length: int | None = None
        self.te: list[bytes] | None = None
        self.chunked = False
        self.connection: frozenset[bytes] = frozenset()
        self.upgrade: bytes | None = None
        self.xff: bytes | None = None
        self.xrid: bytes | None = None
        self.request_id: str | None = None
        self.user_agent = b""
        self.referer = b""
        self.expect_continue = False
        self.continued = False  # a 100 Continue was relayed
        self.http11 = True
        self.keep_alive = False
        self.websocket = False
        self.head_done = False
        self.complete = False
        self.head_size = 16  # the request line's method, version, spaces and CRLF
        self.header_count = 0
        # Decoded body pieces received and not yet sent on.
        self.body: deque[bytes] = deque()
        self.body_buffered = 0
        self.bytes_in = 0
        self.bytes_out = 0
        # Set when the request was refused or timed out before its head was complete.
        self.error: Answer | None = None
        self.status = 0
        self.endpoint: Endpoint | None = None
        # Why the router answered itself, or what went wrong mid-exchange.
        self.problem: str | None = None


def render_request_head(request: Request, client_ip: str, scheme: bytes) -> bytes:
    """The head sent to the backend: HTTP/1.1, origin-form, the end-to-end fields as received,
    the body's framing (the same Content-Length, or chunked), the WebSocket upgrade, then
    X-Forwarded-For (appended to), X-Forwarded-Proto, X-Request-Id and X-Vcap-Request-Id."""
    parts = [request.method, b" ", request.forward_target, b" HTTP/1.1\r\n"]
    for name, value in request.fields:
        parts += (name, b": ", value, b"\r\n")
    if request.chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif request.content_length is not None:
        parts.append(b"Content-Length: %d\r\n" % request.content_length)
    if request.websocket and request.upgrade is not None:
        parts += (b"Connection: Upgrade\r\nUpgrade: ", request.upgrade, b"\r\n")
    request_id = (request.request_id or "").encode("ascii")
    parts += (
        b"X-Forwarded-For: ",
        http1.forwarded_for(request.xff, client_ip),
        b"\r\nX-Forwarded-Proto: ",
        scheme,
        b"\r\nX-Request-Id: ",
        request_id,
        b"\r\nX-Vcap-Request-Id: ",
        request_id,
        b"\r\n\r\n",
    )
    return b"".join(parts)


class RequestReader:
    """Feeds a client connection's bytes to llhttp and queues the requests it finds.

    `requests` holds the requests not yet answered, oldest first; the newest may still be
    arriving. After a refusal (`broken`) the newest request carries the answer in `error` and
    nothing more is parsed. After a WebSocket upgrade (`upgraded`) nothing more is parsed
    either: `feed` returns the bytes after the request (they belong to the WebSocket)."""

    def __init__(
        self,
        *,
        max_header_bytes: int,
        max_headers: int,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        on_event: Callable[[], None],
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_event = on_event
        self._parser = httptools.HttpRequestParser(self)
        self.requests: deque[Request] = deque()
        self.parsing: Request | None = None
        self.broken = False
        self.upgraded = False
        self._failure: Answer | None = None
        self._head_raw = 0

    def feed(self, data: bytes) -> bytes:
        """Parse `data`; the bytes after a WebSocket upgrade request (else b"")."""
        if self.broken or self.upgraded:
            return b""
        parsing = self.parsing
        if parsing is None or parsing.complete or not parsing.head_done:
            # Raw bytes of an unfinished head: llhttp buffers a field until it is complete,
            # so this bounds what it holds before the callbacks can count.
            self._head_raw += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0] :]
            request = self.parsing
            if request is not None and request.websocket:
                self.upgraded = True
                return rest
            # Not a WebSocket: the Upgrade field is dropped and the connection stays HTTP.
            return self.feed(rest) if rest else b""
        except httptools.HttpParserError as error:
            self.fail(self._failure or bad_request(str(error)))
            return b""
        parsing = self.parsing
        if parsing is not None and not parsing.head_done and self._head_raw > self.max_header_bytes:
            self.fail(TOO_LARGE)
        return b""

    def fail(self, answer: Answer) -> Request:
        """Stop parsing; the request being parsed (or a new one) gets `answer`."""
        self.broken = True
        request = self.parsing
        if request is None or request.complete:
            request = self._begin()
        request.error = answer
        self._on_event()
        return request

    def _refuse(self, answer: Answer) -> NoReturn:
        self._failure = answer
        raise _Refused(answer[2])

    def _begin(self) -> Request:
        request = Request(self._clock(), self._wall_clock())
        self.parsing = request
        self.requests.append(request)
        return request

    # -- llhttp callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._begin()
        self._on_event()

    def on_url(self, url: bytes) -> None:
        request = self.parsing
        assert request is not None
        request.target = request.target + url if request.target else url
        request.head_size += len(url)
        if request.head_size > self.max_header_bytes:
            self._refuse(TOO_LARGE)

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.parsing
        assert request is not None
        request.header_count += 1
        request.head_size += len(name) + len(value) + 4
        if request.header_count > self.max_headers or request.head_size > self.max_header_bytes:
            self._refuse(TOO_LARGE)
        if request.head_done:
            return  # a trailer field: checked by llhttp and the limits above, then dropped
        value = value.rstrip(b" \t")
        kind = _SPECIAL.get(name.lower())
        if kind is None:
            request.fields.append((name, value))
        elif kind == _DROP:
            pass
        elif kind == _HOST:
            if request.host_value is not None:
                self._refuse(bad_request("more than one Host"))
            request.host_value = value
            request.fields.append((name, value))
        elif kind == _CONTENT_LENGTH:
            request.content_length = int(value)  # llhttp checked: digits, not repeated
        elif kind == _TE:
            if request.te is None:
                request.te = []
            request.te += [coding.strip(b" \t").lower() for coding in value.split(b",")]
        elif kind == _CONNECTION:
            request.connection = request.connection | http1.connection_tokens(value)
        elif kind == _UPGRADE:
            request.upgrade = value
        elif kind == _XFF:
            request.xff = value if request.xff is None else request.xff + b", " + value
        elif kind == _REQUEST_ID:
            if request.xrid is None:
                request.xrid = value
        else:
            request.fields.append((name, value))
            if kind == _EXPECT:
                request.expect_continue = value.lower() == b"100-continue"
            elif kind == _USER_AGENT:
                request.user_agent = value
            elif kind == _REFERER:
                request.referer = value

    def on_headers_complete(self) -> None:
        request = self.parsing
        assert request is not None
        parser = self._parser
        self._head_raw = 0
        version = parser.get_http_version()
        if version == "1.1":
            request.http11 = True
        elif version == "1.0":
            request.http11 = False
        else:
            self._refuse(bad_request("unsupported HTTP version"))
        method = request.method = parser.get_method()
        if method == b"CONNECT":
            self._refuse((405, "method_not_allowed", "405 Method Not Allowed: CONNECT\n"))
        host = request.host_value
        if host is None:
            self._refuse(bad_request("missing Host"))
        routed = http1.routing_host(host)
        if routed is None:
            self._refuse(bad_request("invalid Host"))
        request.host = routed
        try:
            target = http1.split_target(request.target, method, host)
        except ProtocolError as error:
            self._refuse(bad_request(str(error)))
        request.forward_target = target.forward
        request.path = target.path
        if request.te is not None:
            if not request.http11:
                self._refuse(bad_request("Transfer-Encoding in HTTP/1.0"))
            if request.te != [b"chunked"]:
                self._refuse(bad_request("Transfer-Encoding other than chunked"))
            request.chunked = True
        request.keep_alive = parser.should_keep_alive()
        if parser.should_upgrade():
            if request.chunked or request.content_length:
                self._refuse(bad_request("Upgrade with a body"))
            request.websocket = (
                request.http11
                and method == b"GET"
                and request.upgrade is not None
                and request.upgrade.lower() == b"websocket"
            )
        if not request.http11:
            request.expect_continue = False
        named = request.connection - http1.NOT_CONNECTION_NAMED
        if named:
            request.fields = [f for f in request.fields if f[0].lower() not in named]
        request.request_id = http1.valid_request_id(request.xrid) or http1.new_request_id()
        request.head_done = True
        self._on_event()

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        assert request is not None
        request.body.append(body)
        size = len(body)
        request.body_buffered += size
        request.bytes_in += size
        self._on_event()

    def on_message_complete(self) -> None:
        request = self.parsing
        assert request is not None
        request.complete = True
        self._on_event()

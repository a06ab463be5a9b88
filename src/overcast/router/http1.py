"""The HTTP/1.1 pieces of the data plane that do no I/O: what a proxy strips and adds, the
backends' response heads, chunked bodies, and the router's own answers.

Client requests are parsed by llhttp (`httptools`, in `proxy.py`), with the checks of
`RequestChecks` on top. Backend responses are parsed here: llhttp (as httptools exposes it) can
neither be told that a response answers a HEAD request nor be told the connection ended, and
both decide where a response ends. Everything here is strict: a message that could be framed
two ways is an error, never a guess."""

from __future__ import annotations

import itertools
import re
import uuid
from dataclasses import dataclass, field
from enum import Enum
from http import HTTPStatus
from typing import NamedTuple

CRLF = b"\r\n"

# RFC 9110 7.6.1, plus Proxy-Connection (never standard, still sent) and Trailer (we re-frame).
HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Request fields the proxy sets itself (X-Forwarded-For is appended to, not copied).
REQUEST_REPLACED: frozenset[bytes] = frozenset(
    {
        b"content-length",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-request-id",
        b"x-vcap-request-id",
    }
)
# Response fields the proxy sets itself.
RESPONSE_REPLACED: frozenset[bytes] = frozenset({b"content-length", b"x-request-id"})
# Connection options that name no field to strip (Host is never stripped: backends need it).
NOT_CONNECTION_NAMED: frozenset[bytes] = HOP_BY_HOP | {b"close", b"host"}

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Field values: visible ASCII, space, tab and obs-text; no CR, LF, NUL or other controls.
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
# A chunk extension: `;name` or `;name=token` or `;name="quoted"` (RFC 9112 7.1.1), with OWS.
_CHUNK_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    rb"(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|\"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]"
    rb"|\\[\t\x20-\x7e\x80-\xff])*\"))?)*"
)
# A Host: a DNS name or IPv4 address (letters, digits, '.', '-', '_'), or an IPv6 literal in
# brackets; then an optional port.
_HOST = re.compile(rb"([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{0,5}))?")
_MAX_REQUEST_ID = 200
# The most entries a cache of parsed values (host fields, response lines) holds.
_CACHE_MAX = 4096


class ProtocolError(Exception):
    """A message that cannot be framed or forwarded unambiguously."""


# -- requests ------------------------------------------------------------------------------------


def is_token(name: bytes) -> bool:
    return _TOKEN.fullmatch(name) is not None


def is_field_value(value: bytes) -> bool:
    return _FIELD_VALUE.fullmatch(value) is not None


def valid_request_id(value: bytes | None) -> str | None:
    """The client's X-Request-Id when it is well formed (1 to 200 visible ASCII characters)."""
    if value is None or not 0 < len(value) <= _MAX_REQUEST_ID:
        return None
    for byte in value:
        if byte < 0x21 or byte > 0x7E:
            return None
    return value.decode("ascii")


# Request ids: a random uuid-shaped prefix per process and a counter, which is unique without
# the cost of a uuid4 per request (a measurable share of the data plane's time).
_ID_PREFIX = str(uuid.uuid4())[:24]
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return _ID_PREFIX + "%012x" % (next(_ID_COUNTER) & 0xFFFFFFFFFFFF)


def forwarded_for(existing: bytes | None, client_ip: str) -> bytes:
    """X-Forwarded-For as sent on: the client's value (if any) with the peer address appended."""
    if existing:
        return existing + b", " + client_ip.encode("ascii")
    return client_ip.encode("ascii")


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """The lower-cased option names of a Connection field value."""
    return frozenset(
        token for token in (part.strip(b" \t").lower() for part in value.split(b",")) if token
    )


# Host field values seen before (bounded; cleared when full): clients repeat theirs.
_ROUTING_HOSTS: dict[bytes, str | None] = {}


def routing_host(host: bytes) -> str | None:
    """The lower-cased host name of a Host field value without its port; None when the value is
    not a host."""
    try:
        return _ROUTING_HOSTS[host]
    except KeyError:
        pass
    match = _HOST.fullmatch(host)
    routed = None if match is None else match.group(1).decode("ascii").lower()
    if len(_ROUTING_HOSTS) >= _CACHE_MAX:
        _ROUTING_HOSTS.clear()
    _ROUTING_HOSTS[host] = routed
    return routed


class Target(NamedTuple):
    """A request target as forwarded (origin-form) and as routed (path without query)."""

    forward: bytes
    path: str


def split_target(target: bytes, method: bytes, host: bytes) -> Target:
    """The forwarded and routed forms of a request target.

    origin-form (`/path?query`) is the norm. absolute-form (`http://host/path`) is accepted only
    when its authority is the Host field (case aside) and forwarded in origin-form; asterisk-form
    (`*`) only for OPTIONS, routed as `/`. Anything else (authority-form is CONNECT's) raises."""
    if target[:1] == b"/":
        end = len(target)
        if b"?" in target or b"#" in target:
            for separator in (b"?", b"#"):
                index = target.find(separator)
                if 0 <= index < end:
                    end = index
            return Target(target, target[:end].decode("latin-1"))
        return Target(target, target.decode("latin-1"))
    if target == b"*":
        if method != b"OPTIONS":
            raise ProtocolError("asterisk-form target is for OPTIONS only")
        return Target(target, "/")
    lowered = target[:8].lower()
    if lowered.startswith(b"http://"):
        rest = target[7:]
    elif lowered.startswith(b"https://"):
        rest = target[8:]
    else:
        raise ProtocolError("request target is not origin-form")
    end = len(rest)
    for separator in (b"/", b"?", b"#"):
        index = rest.find(separator)
        if 0 <= index < end:
            end = index
    authority, remainder = rest[:end], rest[end:]
    if b"@" in authority or authority.lower() != host.lower():
        raise ProtocolError("absolute-form target does not match Host")
    if not remainder.startswith(b"/"):
        remainder = b"/" + remainder
    return split_target(remainder, method, host)


# -- responses -----------------------------------------------------------------------------------


class BodyKind(Enum):
    NONE = "none"  # HEAD, 1xx, 204, 304
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"
    CLOSE = "close"  # until the backend closes


@dataclass(slots=True)
class ResponseHead:
    """A backend's response head. `fields` are the end-to-end fields in order: hop-by-hop
    fields, those named in Connection and those of RESPONSE_REPLACED are left out."""

    minor: int
    status: int
    reason: bytes
    fields: list[tuple[bytes, bytes]]
    content_length: int | None
    chunked: bool
    transfer_encoding: bool
    keep_alive: bool
    upgrade: bytes | None
    # `fields` rendered (`name: value` CRLF each), for a relay that adds nothing in between.
    rendered: list[bytes] = field(default_factory=list)

    def body_kind(self, request_method: bytes) -> BodyKind:
        """Where this response's body ends (RFC 9112 6.3)."""
        status = self.status
        if request_method == b"HEAD" or status < 200 or status == 204 or status == 304:
            return BodyKind.NONE
        if self.transfer_encoding:
            return BodyKind.CHUNKED if self.chunked else BodyKind.CLOSE
        if self.content_length is not None:
            return BodyKind.LENGTH
        return BodyKind.CLOSE


# Backends repeat their status lines and most header lines: each one is checked once, then
# looked up (bounded; cleared when full).
_STATUS_LINES: dict[bytes, tuple[int, int, bytes]] = {}
# A header line -> its name, value (OWS stripped), lower-cased name and rendered form.
_HEADER_LINES: dict[bytes, tuple[bytes, bytes, bytes, bytes]] = {}
_CL, _TE_FIELD, _CONN, _UPG, _HOP, _REPLACED = range(6)
_RESPONSE_SPECIAL: dict[bytes, int] = {
    **{name: _HOP for name in HOP_BY_HOP},
    **{name: _REPLACED for name in RESPONSE_REPLACED},
    b"content-length": _CL,
    b"transfer-encoding": _TE_FIELD,
    b"connection": _CONN,
    b"upgrade": _UPG,
}


def _status_line(line: bytes) -> tuple[int, int, bytes]:
    match = _STATUS_LINE.fullmatch(line)
    if match is None:
        raise ProtocolError("invalid status line")
    parsed = (int(match.group(1)), int(match.group(2)), match.group(3) or b"")
    if len(_STATUS_LINES) >= _CACHE_MAX:
        _STATUS_LINES.clear()
    _STATUS_LINES[line] = parsed
    return parsed


def _header_line(line: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    name, colon, value = line.partition(b":")
    if not colon or _TOKEN.fullmatch(name) is None:
        raise ProtocolError("invalid header line")  # also obs-fold: it starts with SP/HTAB
    value = value.strip(b" \t")
    if _FIELD_VALUE.fullmatch(value) is None:
        raise ProtocolError("invalid header value")
    parsed = (name, value, name.lower(), name + b": " + value + CRLF)
    if len(_HEADER_LINES) >= _CACHE_MAX:
        _HEADER_LINES.clear()
    _HEADER_LINES[line] = parsed
    return parsed


def parse_response_head(head: bytes) -> ResponseHead:
    """Parse a response head: the bytes before the blank line (its final CRLF CRLF excluded).
    Lines end with CRLF; obsolete folding, bare CR or LF, invalid names, whitespace before a
    colon, both Content-Length and Transfer-Encoding, or conflicting lengths raise."""
    lines = head.split(CRLF)
    first = lines[0]
    minor, status, reason = _STATUS_LINES.get(first) or _status_line(first)
    fields: list[tuple[bytes, bytes]] = []
    rendered: list[bytes] = []
    content_length: int | None = None
    codings: list[bytes] = []
    transfer_encoding = False
    options: frozenset[bytes] = frozenset()
    upgrade: bytes | None = None
    kept: list[bytes] = []
    cache = _HEADER_LINES
    special = _RESPONSE_SPECIAL
    for index in range(1, len(lines)):
        line = lines[index]
        name, value, lower, line_out = cache.get(line) or _header_line(line)
        kind = special.get(lower)
        if kind is None:
            fields.append((name, value))
            rendered.append(line_out)
            kept.append(lower)
        elif kind == _CL:
            for part in value.split(b","):
                part = part.strip(b" \t")
                if _DIGITS.fullmatch(part) is None:
                    raise ProtocolError("invalid Content-Length")
                length = int(part)
                if content_length is not None and content_length != length:
                    raise ProtocolError("conflicting Content-Length")
                content_length = length
        elif kind == _TE_FIELD:
            transfer_encoding = True
            codings += [c.strip(b" \t").lower() for c in value.split(b",")]
        elif kind == _CONN:
            options = options | connection_tokens(value)
        elif kind == _UPG:
            upgrade = value
    if transfer_encoding and content_length is not None:
        raise ProtocolError("both Content-Length and Transfer-Encoding")
    chunked = False
    if transfer_encoding:
        if b"" in codings or codings.count(b"chunked") > (1 if codings[-1] == b"chunked" else 0):
            raise ProtocolError("invalid Transfer-Encoding")
        chunked = codings[-1] == b"chunked"
    if options:
        named = options - NOT_CONNECTION_NAMED
        if named:
            pairs = zip(fields, rendered, kept, strict=True)
            left = [(f, r) for f, r, lower in pairs if lower not in named]
            fields = [f for f, _ in left]
            rendered = [r for _, r in left]
        keep_alive = b"keep-alive" in options if minor == 0 else b"close" not in options
    else:
        keep_alive = minor != 0
    return ResponseHead(
        minor=minor,
        status=status,
        reason=reason,
        fields=fields,
        content_length=content_length,
        chunked=chunked,
        transfer_encoding=transfer_encoding,
        keep_alive=keep_alive,
        upgrade=upgrade,
        rendered=rendered,
    )


def render_head(first_line: bytes, fields: list[tuple[bytes, bytes]]) -> bytes:
    parts = [first_line, CRLF]
    for name, value in fields:
        parts += (name, b": ", value, CRLF)
    parts.append(CRLF)
    return b"".join(parts)


# -- chunked bodies ------------------------------------------------------------------------------


def chunk(data: bytes) -> list[bytes]:
    """One chunk of a chunked body (never the last one: that is LAST_CHUNK)."""
    return [b"%x\r\n" % len(data), data, CRLF]


LAST_CHUNK = b"0\r\n\r\n"

_SIZE, _DATA, _DATA_CR, _DATA_LF, _TRAILER, _DONE = range(6)


class ChunkedDecoder:
    """An incremental, strict decoder of a chunked body: `feed` returns the data it decoded;
    `done` is set after the last chunk and its trailer section (dropped), and `rest` holds
    what followed. Chunk sizes are 1 to 16 hex digits, extensions are checked and dropped,
    every line ends with CRLF."""

    __slots__ = ("_line", "_max_line", "_max_trailer", "_remaining", "_state", "_trailer", "rest")

    def __init__(self, *, max_line: int = 4096, max_trailer_bytes: int = 16384) -> None:
        self._state = _SIZE
        self._remaining = 0
        self._line = b""
        self._trailer = 0
        self._max_line = max_line
        self._max_trailer = max_trailer_bytes
        self.rest = b""

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        position = 0
        size = len(data)
        while position < size:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, size - position)
                out.append(data if take == size else data[position : position + take])
                position += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _DATA_CR
            elif state == _DATA_CR:
                if data[position] != 13:
                    raise ProtocolError("chunk data not followed by CRLF")
                position += 1
                self._state = _DATA_LF
            elif state == _DATA_LF:
                if data[position] != 10:
                    raise ProtocolError("chunk data not followed by CRLF")
                position += 1
                self._state = _SIZE
            elif state == _DONE:
                self.rest += data[position:]
                break
            else:
                end = data.find(b"\n", position)
                if end < 0:
                    self._line += data[position:]
                    if len(self._line) > self._max_line:
                        raise ProtocolError("chunk line too long")
                    break
                line = self._line + data[position : end + 1]
                self._line = b""
                position = end + 1
                if len(line) > self._max_line:
                    raise ProtocolError("chunk line too long")
                if state == _SIZE:
                    self._size_line(line)
                else:
                    self._trailer_line(line)
                    if self._state == _DONE:
                        self.rest = data[position:]
                        break
        return out

    def _size_line(self, line: bytes) -> None:
        if not line.endswith(CRLF):
            raise ProtocolError("chunk size line not ended by CRLF")
        line = line[:-2]
        digits, semicolon, _ = line.partition(b";")
        if _HEX.fullmatch(digits) is None:
            raise ProtocolError("invalid chunk size")
        if semicolon and _CHUNK_EXT.fullmatch(line[len(digits) :]) is None:
            raise ProtocolError("invalid chunk extension")
        self._remaining = int(digits, 16)
        self._state = _DATA if self._remaining else _TRAILER

    def _trailer_line(self, line: bytes) -> None:
        if not line.endswith(CRLF):
            raise ProtocolError("trailer line not ended by CRLF")
        if line == CRLF:
            self._state = _DONE
            return
        self._trailer += len(line)
        if self._trailer > self._max_trailer:
            raise ProtocolError("trailer section too large")
        name, colon, value = line[:-2].partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise ProtocolError("invalid trailer line")
        if _FIELD_VALUE.fullmatch(value.strip(b" \t")) is None:
            raise ProtocolError("invalid trailer value")


# -- the router's own answers --------------------------------------------------------------------


def router_answer(
    status: int,
    body: str,
    *,
    error: str | None,
    request_id: str | None,
    close: bool,
    http10_keep_alive: bool = False,
) -> tuple[bytes, bytes]:
    """A plain-text response written by the router itself: its head and its body."""
    encoded = body.encode("utf-8", "replace")
    fields: list[tuple[bytes, bytes]] = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"%d" % len(encoded)),
        (b"X-Content-Type-Options", b"nosniff"),
    ]
    if error is not None:
        fields.append((b"X-Cf-Routererror", error.encode("ascii")))
    if request_id is not None:
        fields.append((b"X-Request-Id", request_id.encode("ascii")))
    if close:
        fields.append((b"Connection", b"close"))
    elif http10_keep_alive:
        fields.append((b"Connection", b"keep-alive"))
    phrase = HTTPStatus(status).phrase.encode("ascii")
    return render_head(b"HTTP/1.1 %d %s" % (status, phrase), fields), encoded

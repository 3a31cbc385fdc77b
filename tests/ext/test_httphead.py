"""The fast path's request-head parser against h11, the protocol engine it stands in for.

On any bytes, each twin must either decline (or ask for more) or give exactly what h11
gives: method, target, version, header fields, body length and where the head ends,
across pipelined requests and heads split at every byte.  A disagreement is a request
smuggling hole, so this is a differential test over generated heads (hypothesis) and a
corpus of malformed and smuggling heads.
"""

from __future__ import annotations

from types import ModuleType

import h11
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from slipstream.ext._httphead_py import DECLINE, METHODS, NEED_MORE, RequestHead
from tests.helpers.twins import load_twin

pytestmark = pytest.mark.twins
"""Each twin is loaded by name, whatever twin the environment selected: run once, in the
first pass of ``make pytest`` (see the README, "The compiled extension and its twins")."""

MAX_HEAD = 8192
MAX_FIELDS = 100
TWINS = ("py", "c")


@pytest.fixture
def hh(twin_kind: str) -> ModuleType:
    """The ``httphead`` twin of this parametrisation."""
    return load_twin("httphead", twin_kind)


def parse(kind: str, data: bytes, start: int = 0) -> RequestHead | int:
    result: RequestHead | int = load_twin("httphead", kind).parse_request_head(
        data, start, MAX_HEAD, MAX_FIELDS
    )
    return result


def h11_reading(data: bytes) -> tuple[list[tuple[object, ...]], str | None]:
    """What h11 makes of ``data`` as a server: for each complete request, its head
    fields, body length and the number of bytes its head took; and the error's text if
    it stopped at one."""
    out: list[tuple[object, ...]] = []
    offset = 0
    try:
        while offset < len(data):
            took = _head_length(data, offset)
            if took is None:
                return out, None  # incomplete
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
            conn.receive_data(data[offset:])
            request = conn.next_event()
            assert isinstance(request, h11.Request)
            body = 0
            while True:
                got = conn.next_event()
                if isinstance(got, h11.Data):
                    body += len(got.data)
                elif got is h11.NEED_DATA:
                    return [*out, ("incomplete body",)], None
                else:
                    break
            out.append(
                (
                    request.method,
                    request.target,
                    request.http_version,
                    list(request.headers),
                    body,
                    took,
                )
            )
            offset += took + body
            if conn.their_state is h11.MUST_CLOSE:
                return out, None
    except h11.RemoteProtocolError as exc:
        return out, f"error: {exc}"
    return out, None


def _head_length(data: bytes, offset: int) -> int | None:
    """The bytes h11 needs at ``data[offset:]`` before it gives the request head (the
    shortest prefix that yields it), or None if no prefix does."""
    for took in range(1, len(data) - offset + 1):
        probe = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        probe.receive_data(data[offset : offset + took])
        event = probe.next_event()
        if isinstance(event, h11.Request):
            return took
        if event is not h11.NEED_DATA:
            return None
    return None


def fast_reading(kind: str, data: bytes) -> tuple[list[tuple[object, ...]], int | None]:
    """The same from the fast parser, and DECLINE or NEED_MORE where it stopped (None
    when it took every byte)."""
    out: list[tuple[object, ...]] = []
    offset = 0
    while offset < len(data):
        head = parse(kind, data, offset)
        if isinstance(head, int):
            return out, head
        body = head.content_length
        if head.end + body > len(data):
            return [*out, ("incomplete body",)], None
        out.append((head.method, head.target, head.version, head.headers, body, head.end - offset))
        offset = head.end + body
        if head.version == b"1.0" or _asks_to_close(head):  # h11 then reads no more
            return out, None
    return out, None


def _asks_to_close(head: RequestHead) -> bool:
    """``Connection: close`` among the request's connection options (as h11 reads them)."""
    return any(
        option.strip().lower() == b"close"
        for name, value in head.headers
        if name == b"connection"
        for option in value.split(b",")
    )


def agree(data: bytes) -> int:
    """Both twins agree with each other, and h11 reads every request they take as they
    do; the number of requests they took."""
    py, c = fast_reading("py", data), fast_reading("c", data)
    assert py == c, data
    taken, _ = py
    if taken:
        expected, error = h11_reading(data)
        assert expected[: len(taken)] == taken, (data, error)
    return len(taken)


# ----------------------------------------------------------------- known heads

GOOD = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x?y=1&z=%20 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8\r\n\r\n",
    b"HEAD /f HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    b"POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n1234567",
    b"PUT /api HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"DELETE /j/1 HTTP/1.1\r\nHOST:a\r\nX-Empty:\r\nX-Spaces: \t a  b \t\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Obs: caf\xc3\xa9\xff\r\n\r\n",
    b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1,5-\r\n\r\n",
]

DECLINED = [
    b"GET / HTTP/1.1\r\n\r\n",  # no Host
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF
    b"GET / HTTP/1.1\r\nHost: a\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",  # bare CR
    b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    b"GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHo\x00st: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\x7fb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",  # absolute-form
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"PATCH / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
    b"GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    b"GET / http/1.1\r\nHost: a\r\n\r\n",
    b"GET /\r\nHost: a\r\n\r\n",  # HTTP/0.9-like
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",  # a leading empty line
    b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 100 + b"\r\n",  # too many fields
    b"GET /" + b"a" * MAX_HEAD + b" HTTP/1.1\r\nHost: a\r\n\r\n",  # too long
]


@pytest.mark.parametrize("data", GOOD)
def test_known_good_heads_are_taken_as_h11_reads_them(hh: ModuleType, data: bytes) -> None:
    head = hh.parse_request_head(data, 0, MAX_HEAD, MAX_FIELDS)
    assert isinstance(head, RequestHead)
    assert agree(data) == 1


@pytest.mark.parametrize("data", DECLINED)
def test_unusual_and_smuggling_heads_are_declined(hh: ModuleType, data: bytes) -> None:
    assert hh.parse_request_head(data, 0, MAX_HEAD, MAX_FIELDS) == DECLINE


def test_fields(hh: ModuleType) -> None:
    data = b"xxPOST /a?b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX-A:  v w \r\n\r\nabcGET"
    head = hh.parse_request_head(data, 2, MAX_HEAD, MAX_FIELDS)
    assert head == RequestHead(
        b"POST",
        b"/a?b",
        b"1.1",
        [(b"host", b"h"), (b"content-length", b"3"), (b"x-a", b"v w")],
        3,
        data.index(b"abc"),
    )
    assert hh.parse_request_head(bytearray(data), 2, MAX_HEAD, MAX_FIELDS) == head
    assert hh.parse_request_head(data, len(data) - 3, MAX_HEAD, MAX_FIELDS) == NEED_MORE
    assert hh.parse_request_head(data, len(data), MAX_HEAD, MAX_FIELDS) == NEED_MORE
    with pytest.raises(ValueError):
        hh.parse_request_head(data, -1, MAX_HEAD, MAX_FIELDS)


def test_limits(hh: ModuleType) -> None:
    data = b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n"
    assert isinstance(hh.parse_request_head(data, 0, len(data), 2), RequestHead)
    assert hh.parse_request_head(data, 0, len(data) - 1, 2) == DECLINE
    assert hh.parse_request_head(data, 0, len(data), 1) == DECLINE
    assert hh.parse_request_head(b"GET /" + b"a" * 20, 0, 10, 2) == DECLINE  # no end, over
    assert hh.parse_request_head(b"GET /" + b"a" * 5, 0, 10, 2) == NEED_MORE


@pytest.mark.parametrize("data", GOOD + DECLINED[:12])
def test_a_head_split_at_every_byte(hh: ModuleType, data: bytes) -> None:
    whole = hh.parse_request_head(data, 0, MAX_HEAD, MAX_FIELDS)
    end = whole.end if isinstance(whole, RequestHead) else len(data)
    for cut in range(end):
        part = hh.parse_request_head(data[:cut], 0, MAX_HEAD, MAX_FIELDS)
        assert part in (NEED_MORE, DECLINE)
        if isinstance(whole, RequestHead):
            assert part == NEED_MORE, (cut, part)


def test_pipelined_requests_agree_with_h11() -> None:
    assert agree(b"".join(GOOD[:3])) == 3  # stops after the HTTP/1.0 one
    assert agree(GOOD[4] + GOOD[1] + GOOD[5] + GOOD[0]) == 4
    assert agree(GOOD[4] + DECLINED[13] + GOOD[0]) == 1
    close = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n"
    assert agree(close + GOOD[0]) == 1


# ----------------------------------------------------------------- generated heads

NAMES = st.sampled_from(
    [b"Accept", b"X-A", b"Range", b"If-None-Match", b"Cookie", b"Authorization", b"CONNECTION"]
)
VALUES = st.one_of(
    st.sampled_from([b"a", b"", b" a ", b"\ta", b"a  b", b"close", b"bytes=0-", b"\xc3\xa9"]),
    st.binary(max_size=6).filter(lambda v: not set(v) & set(b"\r\n")),
)
MUTATIONS = [
    (b"\r\n", b"\n"),
    (b"\r\n", b"\r"),
    (b"\r\n", b" \r\n"),
    (b": ", b" : "),
    (b": ", b":\r\n "),  # obs-fold
    (b" /", b"  /"),
    (b" HTTP/", b"\tHTTP/"),
    (b"HTTP/1.1", b"HTTP/1.2"),
    (b"HTTP/1.1", b"HTTP/1.0"),
    (b"Host: h", b"Host: h\r\nHost: h"),
    (b"Host: h\r\n", b""),
    (b"Host", b"Transfer-Encoding: chunked\r\nHost"),
    (b"Host", b"Expect: 100-continue\r\nHost"),
    (b"Host", b"Upgrade: h2c\r\nHost"),
    (b"Host", b"Content-Length: 2\r\nHost"),
    (b"Host", b"content-length: 2, 2\r\nHost"),
    (b"Host", b"Content-Length: 02\r\nHost"),
    (b"Host", b"Content-Length : 2\r\nHost"),
    (b"Host", b"X\x00: 1\r\nHost"),
    (b"Host", b": 1\r\nHost"),
]


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """A request in the fast path's subset, maybe with one change that takes it out."""
    method = draw(st.sampled_from(sorted(METHODS)))
    target = draw(st.sampled_from([b"/", b"/a?b=c", b"/%20x", b"/a/b;c"]))
    lines = [method + b" " + target + b" HTTP/1.1"]
    fields = draw(st.lists(st.tuples(NAMES, VALUES), max_size=5))
    lines += [name + b": " + value for name, value in fields]
    lines.insert(draw(st.integers(1, len(lines))), b"Host: h")
    length = draw(st.integers(min_value=0, max_value=6))
    if length or draw(st.booleans()):
        lines.insert(draw(st.integers(1, len(lines))), b"Content-Length: %d" % length)
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if draw(st.booleans()):
        old, new = draw(st.sampled_from(MUTATIONS))
        at = head.find(old)
        if at >= 0:
            head = head[:at] + new + head[at + len(old) :]
    return head + draw(st.binary(min_size=length, max_size=length))


@given(st.lists(heads(), min_size=1, max_size=3))
@settings(max_examples=400, deadline=None)
def test_generated_heads_agree_with_h11(requests: list[bytes]) -> None:
    event("fast path took a request" if agree(b"".join(requests)) else "fast path declined")


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_agree_with_h11(data: bytes) -> None:
    agree(b"GET / HTTP/1.1\r\nHost: a\r\n" + data)
    agree(data)


# ----------------------------------------------------------------- response header lines


def lines_or_error(kind: str, date: str, headers: list[tuple[str, str]]) -> object:
    """What a twin's ``header_lines`` gives: the bytes, or the error's type (and text,
    for the ValueErrors the twins word alike)."""
    try:
        return load_twin("httphead", kind).header_lines(date, headers)
    except ValueError as exc:
        if isinstance(exc, UnicodeError):
            return type(exc)
        return (ValueError, str(exc))


FIELD_TEXT = st.one_of(
    st.sampled_from(
        [
            "ETag",
            "content-length",
            "Connection",
            "TRANSFER-ENCODING",
            "X-A",
            "",
            "A b",
            "é",
            "Set-Cookie",
            "Content-Disposition",
            "a\udc80",
            '"x"',
            "bytes 0-1/2",
            "a\tb",
            "a\r\nb",
            "a\x7f",
            "caf\u00e9",
            "\udc80",
            "x" * 300,
        ]
    ),
    st.text(max_size=8),
)


@given(st.lists(st.tuples(FIELD_TEXT, FIELD_TEXT), max_size=5), st.text(max_size=30))
@settings(max_examples=400, deadline=None)
def test_twins_write_the_same_header_lines(headers: list[tuple[str, str]], date: str) -> None:
    date = date.encode("utf-8", "replace").decode("utf-8")  # the date is always text
    py = lines_or_error("py", date, headers)
    assert lines_or_error("c", date, headers) == py


def test_header_lines(hh: ModuleType) -> None:
    assert hh.header_lines(
        "Tue, 01 Dec 2026 00:00:00 GMT", [("ETag", '"a"'), ("X", "caf\u00e9")]
    ) == (b'Date: Tue, 01 Dec 2026 00:00:00 GMT\r\nETag: "a"\r\nX: caf\xc3\xa9\r\n')
    assert hh.header_lines("d", []) == b"Date: d\r\n"
    with pytest.raises(ValueError, match="refusing response header name 'Content-Length'"):
        hh.header_lines("d", [("X", "a\nb"), ("Content-Length", "1")])  # names first
    with pytest.raises(ValueError, match="refusing control characters in header Y"):
        hh.header_lines("d", [("X", "fine\t"), ("Y", "a\r\nSet-Cookie: x")])
    with pytest.raises(UnicodeEncodeError):
        hh.header_lines("d", [("X", "\udc80")])


def test_one_letter_names_leave_the_interpreter_s_bytes_alone(hh: ModuleType) -> None:
    """CPython shares one object per one-byte ``bytes``: lower-casing a one-letter header
    name must make a new object, never write into that shared one (which would turn
    every ``b"X"`` of the process into ``b"x"``)."""
    for letter in b"AZXY":
        data = b"GET / HTTP/1.1\r\nHost: a\r\n%c: 1\r\n\r\n" % letter
        head = hh.parse_request_head(data, 0, MAX_HEAD, MAX_FIELDS)
        assert head.headers[1] == (bytes([letter + 32]), b"1")
        at = data.index(b"\n%c:" % letter) + 1
        single = data[at : at + 1]  # a one-byte slice is CPython's shared object
        assert single == chr(letter).encode("ascii")
        assert single.lower() != single

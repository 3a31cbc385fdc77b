"""The fast path's response-head parser against h11's client side, the engine it stands
in for when slipstream reads an upstream's answer.

On any bytes, each twin must either decline (or ask for more) or give exactly what h11
gives after a ``GET``: status, reason, header fields, the body's length (its framing)
and where the head ends (the bytes h11 keeps past it).  Two parsers that disagree on a
response's framing are how a proxy gets desynchronised from its upstream, so this is a
differential test over generated heads (hypothesis) and a corpus of unusual heads.
"""

from __future__ import annotations

from types import ModuleType

import h11
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from slipstream.ext._httphead_py import DECLINE, NEED_MORE, ResponseHead
from tests.helpers.twins import load_twin

pytestmark = pytest.mark.twins

MAX_HEAD = 8192
MAX_FIELDS = 100


@pytest.fixture
def hh(twin_kind: str) -> ModuleType:
    """The ``httphead`` twin of this parametrisation."""
    return load_twin("httphead", twin_kind)


def parse(kind: str, data: bytes, start: int = 0) -> ResponseHead | int:
    result: ResponseHead | int = load_twin("httphead", kind).parse_response_head(
        data, start, MAX_HEAD, MAX_FIELDS
    )
    return result


def h11_reading(data: bytes) -> tuple[object, ...] | str:
    """What h11's client side makes of ``data`` as the answer to a ``GET``: status,
    reason, headers, the body length it frames, the bytes left past the head; or the
    error (``"need data"`` when the head is not complete)."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "h")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    try:
        response = conn.next_event()
        if response is h11.NEED_DATA:
            return "need data"
        if not isinstance(response, h11.Response):
            return f"not a response: {response!r}"
        left = bytes(conn.trailing_data[0])
        body = 0
        while True:  # how h11 frames the body, from the bytes that follow the head
            got = conn.next_event()
            if isinstance(got, h11.Data):
                body += len(got.data)
            elif isinstance(got, h11.EndOfMessage):
                break
            else:
                return "body not framed by its length"
    except h11.RemoteProtocolError as exc:
        return f"error: {exc}"
    return (
        response.status_code,
        response.reason,
        list(response.headers),
        body,
        left,
    )


def agree(data: bytes) -> bool:
    """Both twins agree with each other and, where they take the head, with h11
    (``data`` holds the whole body); whether they took it."""
    py, c = parse("py", data), parse("c", data)
    assert py == c, data
    if py == NEED_MORE and data:  # (no data at all would tell h11 the connection closed)
        assert h11_reading(data) == "need data", data
    if not isinstance(py, ResponseHead):
        return False
    fast = (py.status, py.reason, py.headers, py.content_length, data[py.end :])
    assert h11_reading(data) == fast, data
    return True


NGINX = (
    b"HTTP/1.1 206 Partial Content\r\nServer: nginx/1.22.1\r\n"
    b"Date: Wed, 02 Dec 2026 04:00:00 GMT\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: 4\r\nLast-Modified: Wed, 02 Dec 2026 04:00:00 GMT\r\n"
    b'Connection: keep-alive\r\nETag: "abc-4"\r\nContent-Range: bytes 0-3/10\r\n\r\nabcd'
)

GOOD = [
    NGINX,
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 \r\nContent-Length: 3\r\n\r\nabc",  # an empty reason
    b"HTTP/1.1 404 Not\tFound \xff\r\ncontent-length: 007\r\n\r\n1234567",
    b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */10\r\nContent-Length: 0\r\n"
    b"X-Empty:\r\nX-Spaces: \t a  b \t\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nLocation: /x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.1 599 X\r\nContent-Length: 1\r\nX-Obs: caf\xc3\xa9\r\n\r\nx",
]

DECLINED = [
    b"HTTP/1.1 200 OK\r\n\r\n",  # close-delimited
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 199 X\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",  # no reason at all: h11's
    b"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",  # bare LF
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\rX: y\r\n\r\n",  # bare CR
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n folded\r\n\r\n",  # obs-fold
    b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n: a\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x7fb\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 O\x00K\r\nContent-Length: 0\r\n\r\n",
    b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",  # a leading empty line
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + b"X: y\r\n" * 100 + b"\r\n",  # too many
    b"HTTP/1.1 200 " + b"a" * MAX_HEAD + b"\r\nContent-Length: 0\r\n\r\n",  # too long
]


@pytest.mark.parametrize("data", GOOD)
def test_known_good_heads_are_taken_as_h11_reads_them(hh: ModuleType, data: bytes) -> None:
    assert isinstance(hh.parse_response_head(data, 0, MAX_HEAD, MAX_FIELDS), ResponseHead)
    assert agree(data)


@pytest.mark.parametrize("data", DECLINED)
def test_unusual_heads_are_declined(hh: ModuleType, data: bytes) -> None:
    assert hh.parse_response_head(data, 0, MAX_HEAD, MAX_FIELDS) == DECLINE


def test_fields(hh: ModuleType) -> None:
    data = b"xxHTTP/1.1 206 Partial\r\nContent-Length: 3\r\nX-A:  v w \r\n\r\nabc"
    head = hh.parse_response_head(data, 2, MAX_HEAD, MAX_FIELDS)
    assert head == ResponseHead(
        206, b"Partial", [(b"content-length", b"3"), (b"x-a", b"v w")], 3, data.index(b"abc")
    )
    assert hh.parse_response_head(bytearray(data), 2, MAX_HEAD, MAX_FIELDS) == head
    assert hh.parse_response_head(memoryview(data), 2, MAX_HEAD, MAX_FIELDS) == head
    assert hh.parse_response_head(data, len(data), MAX_HEAD, MAX_FIELDS) == NEED_MORE
    with pytest.raises(ValueError):
        hh.parse_response_head(data, -1, MAX_HEAD, MAX_FIELDS)


def test_limits(hh: ModuleType) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: 1\r\n\r\n"
    assert isinstance(hh.parse_response_head(data, 0, len(data), 2), ResponseHead)
    assert hh.parse_response_head(data, 0, len(data) - 1, 2) == DECLINE
    assert hh.parse_response_head(data, 0, len(data), 1) == DECLINE
    assert hh.parse_response_head(b"HTTP/1.1 200 " + b"a" * 20, 0, 10, 2) == DECLINE
    assert hh.parse_response_head(b"HTTP/1.1 200", 0, 20, 2) == NEED_MORE


@pytest.mark.parametrize("data", GOOD[:4] + DECLINED[:8])
def test_a_head_split_at_every_byte(hh: ModuleType, data: bytes) -> None:
    whole = hh.parse_response_head(data, 0, MAX_HEAD, MAX_FIELDS)
    end = whole.end if isinstance(whole, ResponseHead) else len(data)
    for cut in range(end):
        part = hh.parse_response_head(data[:cut], 0, MAX_HEAD, MAX_FIELDS)
        assert part in (NEED_MORE, DECLINE)
        if isinstance(whole, ResponseHead):
            assert part == NEED_MORE, (cut, part)


NAMES = st.sampled_from(
    [b"ETag", b"Content-Range", b"Last-Modified", b"Connection", b"X-A", b"SERVER", b"Date"]
)
VALUES = st.one_of(
    st.sampled_from([b"a", b"", b" a ", b"\ta", b"a  b", b"close", b'"e"', b"\xc3\xa9"]),
    st.binary(max_size=6).filter(lambda v: not set(v) & set(b"\r\n")),
)
REASONS = st.one_of(
    st.sampled_from([b"OK", b"", b"Partial Content", b" x\t", b"\xff"]),
    st.binary(max_size=6).filter(lambda v: not set(v) & set(b"\r\n")),
)
MUTATIONS = [
    (b"\r\n", b"\n"),
    (b"\r\n", b"\r"),
    (b"\r\n", b" \r\n"),
    (b": ", b" : "),
    (b": ", b":\r\n "),  # obs-fold
    (b"HTTP/1.1 ", b"HTTP/1.1  "),
    (b"HTTP/1.1", b"HTTP/1.0"),
    (b"HTTP/1.1", b"HTTP/2.0"),
    (b"Content-Length", b"Transfer-Encoding: chunked\r\nContent-Length"),
    (b"Content-Length: ", b"Content-Length: 1\r\nContent-Length: "),
    (b"Content-Length: ", b"Content-Length: +"),
    (b"Content-Length: ", b"Content-Length: 0"),
    (b"Content-Length", b"Content-Length "),
    (b"Content-Length", b"X\x00: 1\r\nContent-Length"),
    (b"Content-Length", b": 1\r\nContent-Length"),
]


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    """A response in the fast path's subset, maybe with one change that takes it out,
    followed by its body and maybe more bytes (the next response, or garbage)."""
    status = draw(st.one_of(st.integers(100, 999), st.sampled_from([200, 204, 206, 304, 416])))
    lines = [b"HTTP/1.1 %d " % status + draw(REASONS)]
    fields = draw(st.lists(st.tuples(NAMES, VALUES), max_size=5))
    lines += [name + b": " + value for name, value in fields]
    length = draw(st.integers(min_value=0, max_value=6))
    if draw(st.integers(0, 9)):  # mostly framed by Content-Length
        lines.insert(draw(st.integers(1, len(lines))), b"Content-Length: %d" % length)
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if draw(st.booleans()):
        old, new = draw(st.sampled_from(MUTATIONS))
        at = head.find(old)
        if at >= 0:
            head = head[:at] + new + head[at + len(old) :]
    return head + draw(st.binary(min_size=length, max_size=length)) + draw(st.binary(max_size=4))


@given(responses())
@settings(max_examples=500, deadline=None)
def test_generated_heads_agree_with_h11(data: bytes) -> None:
    event("fast path took the head" if agree(data) else "fast path declined")


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_agree_with_h11(data: bytes) -> None:
    agree(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + data)
    agree(data)

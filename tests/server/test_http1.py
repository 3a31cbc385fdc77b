"""HTTP/1.1 heads of the connection loop (sans-IO): the fast path writes what h11 would."""

from __future__ import annotations

from urllib.parse import parse_qs

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slipstream.ext import RequestHead, parse_request_head
from slipstream.server.http import REASONS
from slipstream.server.http1 import (
    ProtocolFailure,
    asks_to_close,
    header_block,
    merged_headers,
    parse_query,
    request_of,
    response_head,
)


def h11_head(status: int, length: int | None, close: bool) -> bytes:
    """h11's head for a reply to a keep-alive HTTP/1.1 request, framing fields only."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(conn.next_event(), h11.Request)
    fields = [] if length is None else [(b"Content-Length", str(length).encode())]
    if close:
        fields.append((b"Connection", b"close"))
    head = conn.send(h11.Response(status_code=status, headers=fields, reason=REASONS[status]))
    assert head is not None
    return head


@pytest.mark.parametrize(
    ("status", "length", "close"),
    [(200, 1024, False), (206, 1, True), (304, None, False), (404, 37, True), (204, None, True)],
)
def test_the_fast_head_is_h11_s_plus_the_other_fields(
    status: int, length: int | None, close: bool
) -> None:
    ours = response_head(status, length, close, [("ETag", '"x"')])
    framing, rest = ours.split(b"Date: ", 1)
    assert framing + b"\r\n" == h11_head(status, length, close)
    assert rest.endswith(b'\r\nETag: "x"\r\n\r\n')


def test_header_block_refuses_injection_and_framing_fields() -> None:
    assert header_block([("X-A", "a\tb"), ("X-B", "caf\u00e9")]).endswith(
        "X-A: a\tb\r\nX-B: caf\u00e9\r\n".encode()
    )
    for name in ("Content-Length", "connection", "Transfer-Encoding", "Bad Name", "X:Y", ""):
        with pytest.raises(ValueError, match="name"):
            header_block([(name, "1")])
    for value in ("a\r\nSet-Cookie: x", "a\nb", "a\x00", "a\x7f"):
        with pytest.raises(ValueError, match="X-Bad"):
            header_block([("X-Good", "fine"), ("X-Bad", value)])
    with pytest.raises(ValueError):
        header_block([("X-Good", "fine"), ("X-Good", "then\rnot")])  # a name seen before


def test_asks_to_close() -> None:
    def head(version: bytes, *fields: tuple[bytes, bytes]) -> RequestHead:
        return RequestHead(b"GET", b"/", version, list(fields), 0, 0)

    assert asks_to_close(head(b"1.0", (b"host", b"a")))
    assert not asks_to_close(head(b"1.1", (b"host", b"a")))
    assert asks_to_close(head(b"1.1", (b"connection", b"keep-alive, Close ")))
    assert not asks_to_close(head(b"1.1", (b"connection", b"closed")))


def test_a_fast_request_is_the_request_h11_s_path_makes() -> None:
    data = b"GET /a%20b?x=1&x=2&y HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    head = parse_request_head(data, 0, 4096, 10)
    assert isinstance(head, RequestHead)
    fast = request_of(head.method, head.target, merged_headers(head.headers), "c")
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    slow = request_of(event.method, event.target, merged_headers(event.headers), "c")
    assert fast == slow
    assert fast.path == "/a b"
    assert fast.query == {"x": ["1", "2"], "y": [""]}
    assert fast.headers == {"host": "h", "x-a": "1, 2"}


@pytest.mark.parametrize("target", [b"/%ff", b"a", b"/%e9t%e9"])
def test_bad_targets_are_400(target: bytes) -> None:
    with pytest.raises(ProtocolFailure) as caught:
        request_of(b"GET", target, {}, "c")
    assert caught.value.status == 400


QUERY_CHARS = st.sampled_from([*list("ab=&;+%20xé?/"), "%zz", "%e9", "=="])


@given(st.lists(QUERY_CHARS, max_size=20).map("".join))
def test_parse_query_is_parse_qs(query: str) -> None:
    try:
        expected: object = parse_qs(query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        expected = UnicodeDecodeError
    try:
        got: object = parse_query(query)
    except UnicodeDecodeError:
        got = UnicodeDecodeError
    assert got == expected


def test_parse_query_fast_path() -> None:
    assert parse_query("a=1&&b&=x&a=2&c==d") == {"a": ["1", "2"], "b": [""], "": ["x"], "c": ["=d"]}

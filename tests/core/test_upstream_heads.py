"""The fast path of upstream exchanges (slipstream.upstream): a plain ``GET`` written from
a bytes template, byte for byte what h11 writes, and a plain response head read by the
extension without h11; everything else handed to h11 with the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

import h11
import pytest
import trio
from hypothesis import event, given, settings
from hypothesis import strategies as st

from slipstream.fetch import Fetcher
from slipstream.upstream import request_head
from slipstream.upstream_request import RangeTemplate
from tests.core.test_fetch_pump import BODY, Script, chunked, fetch_all, head, serve
from tests.helpers.fetch import OPEN


def h11_request(target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes | str:
    """What h11's client writes for ``GET target`` with ``headers``, or its error."""
    conn = h11.Connection(h11.CLIENT)
    try:
        data = conn.send(h11.Request(method="GET", target=target, headers=headers))
    except h11.LocalProtocolError as exc:
        return f"error: {exc}"
    return (data or b"") + (conn.send(h11.EndOfMessage()) or b"")


NAMES = st.sampled_from(
    [b"Host", b"User-Agent", b"Range", b"Accept-Encoding", b"Cookie", b"X A", b"", b"X\x00"]
)
VALUES = st.one_of(
    st.sampled_from([b"a", b"", b" a", b"a ", b"a \t b", b"bytes=0-1", b"\xc3\xa9", b"a\r\nb"]),
    st.binary(max_size=6),
)
TARGETS = st.sampled_from([b"/", b"/a?b=c", b"/%20x", b"/a b", b"x", b"/\x7f", b"/\x80", b""])


@given(TARGETS, st.lists(st.tuples(NAMES, VALUES), max_size=5), st.booleans())
@settings(max_examples=500, deadline=None)
def test_the_request_template_writes_what_h11_writes(
    target: bytes, fields: list[tuple[bytes, bytes]], host: bool
) -> None:
    headers = [(b"Host", b"h:1"), *fields] if host else fields
    fast = request_head("GET", target, headers)
    if fast is None:
        event("left to h11")
        return
    event("written from the template")
    assert fast == h11_request(target, headers)


@given(
    TARGETS,
    st.lists(st.tuples(NAMES, VALUES), max_size=5),
    st.booleans(),
    st.integers(0, 2**63),
    st.integers(0, 2**63),
)
@settings(max_examples=500, deadline=None)
def test_a_range_template_writes_what_request_head_writes(
    target: bytes, fields: list[tuple[bytes, bytes]], host: bool, first: int, last: int
) -> None:
    headers = [(b"Host", b"h:1"), *fields] if host else fields
    template = RangeTemplate.of(headers)
    ranged = [*headers, (b"Range", b"bytes=%d-%d" % (first, last))]
    if template is None:
        event("no template")
        assert request_head("GET", b"/", ranged) is None or any(
            name.lower() == b"range" for name, _ in headers
        )
        return
    event("from the template")
    assert template.head(target, first, last) == request_head("GET", target, ranged)


def test_the_request_template_leaves_unusual_requests_to_h11() -> None:
    host = [(b"Host", b"h")]
    assert request_head("GET", b"/x", [*host, (b"Range", b"bytes=0-1")]) == (
        b"GET /x HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\n"
    )
    assert request_head("HEAD", b"/x", host) is None
    assert request_head("GET", b"/x", []) is None  # no Host
    assert request_head("GET", b"/x", host * 2) is None
    assert request_head("GET", b"/x", [*host, (b"Content-Length", b"0")]) is None
    assert request_head("GET", b"/x", [*host, (b"Transfer-Encoding", b"chunked")]) is None
    assert request_head("GET", b"/x", [*host, (b"Expect", b"100-continue")]) is None
    assert request_head("GET", b"/x", [*host, (b"X", b"a\r\nInjected: 1")]) is None
    assert request_head("GET", b"/x y", host) is None


@pytest.fixture
def h11_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """h11 client connections made while the test runs (the loopback server's are not
    counted)."""
    made: list[object] = []
    real = h11.Connection

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, our_role: object, *args: object, **kwargs: object) -> None:
            if our_role is h11.CLIENT:
                made.append(self)
            super().__init__(our_role, *args, **kwargs)

    monkeypatch.setattr(h11, "Connection", Counting)
    yield made


async def test_a_plain_answer_is_read_without_h11(
    nursery: trio.Nursery, h11_clients: list[object]
) -> None:
    """A head in the fast path's subset, arriving a few bytes at a time, with the first
    body bytes, and a second one on the same connection: no h11 at all."""
    first = head(len(BODY), 'ETag: "e"\r\n') + BODY[:100]
    pieces = [first[i : i + 7] for i in range(0, len(first), 7)]
    upstream, url = await serve(nursery, Script([[*pieces, BODY[100:]], [head(3) + b"abc"]]))
    async with Fetcher(OPEN) as f:
        async with f.stream(url) as got:
            assert got.headers["etag"] == '"e"'
            assert got.can_splice
            buffer = memoryview(bytearray(len(BODY)))
            assert await got.fill(buffer) == len(BODY)
            assert buffer == BODY
        assert await fetch_all(f, url) == (200, b"abc")
    assert upstream.connections == 1
    assert h11_clients == []
    assert upstream.requests[0].startswith(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:")


@pytest.mark.parametrize(
    "reply",
    [
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunked(BODY, 1000)],
        [b"HTTP/1.1 100 Continue\r\n\r\n", head(len(BODY)), BODY],
        [b"HTTP/1.0 200 OK\r\n", b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 10240\r\nX: a\x01b\r\n\r\n" + BODY],
    ],
    ids=["chunked", "1xx", "http/1.0", "control-byte"],
)
async def test_other_answers_are_handed_to_h11_with_every_byte(
    nursery: trio.Nursery, h11_clients: list[object], reply: list[bytes]
) -> None:
    _, url = await serve(nursery, Script([reply]))
    async with Fetcher(OPEN) as f:
        assert await fetch_all(f, url) == (200, BODY)
    assert len(h11_clients) == 1


async def test_one_read_takes_the_bytes_past_the_head_and_those_already_received(
    nursery: trio.Nursery,
) -> None:
    """A body that arrived with its head, beyond the head's 16 KiB read: one readinto
    gives all of it (not the bytes read with the head first, then the rest)."""
    body = bytes(range(256)) * 160  # 40 KiB
    _, url = await serve(nursery, Script([[head(len(body)) + body]]))
    async with Fetcher(OPEN) as f, f.stream(url) as got:
        buffer = memoryview(bytearray(1 << 20))
        assert await got.readinto(buffer) == len(body)
        assert buffer[: len(body)] == body
        assert await got.readinto(buffer) == 0

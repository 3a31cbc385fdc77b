"""The body pump of plaintext fetches (slipstream.upstream through Fetcher.stream) against
a scripted upstream that sends exact bytes in exact segments: bodies one byte at a time,
in one write with the head, cut short, longer than announced, chunked; keep-alive reuse,
a stale pooled connection, a read timeout; and the same bodies read through httpx
(``pump=False``), the reference, compared byte for byte.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slipstream.fetch import Fetcher, FetchError
from tests.helpers.fetch import OPEN


@dataclass
class Script:
    """What the scripted upstream sends for each request on a connection, in order:
    a list of byte segments (sent with a pause between them) per request; after the
    last reply the connection is closed (or kept open with ``linger``)."""

    replies: list[list[bytes]]
    pause: float = 0.002
    linger: bool = True
    close_after: set[int] = field(default_factory=set)
    """Close the connection right after these replies (by index)."""


class ScriptedUpstream:
    """A loopback TCP server: each connection answers its requests with ``script``
    (connections share the script's replies in order of the requests they get)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.port = 0
        self.connections = 0
        self.requests: list[bytes] = []

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = int(listeners[0].socket.getsockname()[1])
        task_status.started(self.port)
        await trio.serve_listeners(self._serve, listeners)

    async def _serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffered = b""
        try:
            with trio.fail_after(10):
                while True:
                    while b"\r\n\r\n" not in buffered:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        buffered += data
                    head, buffered = buffered.split(b"\r\n\r\n", 1)
                    index = len(self.requests)
                    self.requests.append(head)
                    if index >= len(self.script.replies):
                        return
                    for n, segment in enumerate(self.script.replies[index]):
                        if n:
                            await trio.sleep(self.script.pause)
                        await stream.send_all(segment)
                    if index in self.script.close_after:
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


def head(length: int | None, extra: str = "") -> bytes:
    framing = f"Content-Length: {length}\r\n" if length is not None else ""
    return f"HTTP/1.1 200 OK\r\n{framing}{extra}\r\n".encode()


def chunked(body: bytes, size: int) -> bytes:
    out = b""
    for start in range(0, len(body), size):
        piece = body[start : start + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


async def fetch_all(
    fetcher: Fetcher, url: str, buffer_size: int = 1 << 20, headers: Sequence[tuple[str, str]] = ()
) -> tuple[int, bytes]:
    async with fetcher.stream(url, headers) as got:
        out = bytearray()
        buffer = memoryview(bytearray(buffer_size))
        while count := await got.readinto(buffer):
            out += buffer[:count]
        return got.status, bytes(out)


async def serve(nursery: trio.Nursery, script: Script) -> tuple[ScriptedUpstream, str]:
    upstream = ScriptedUpstream(script)
    port = await nursery.start(upstream.run)
    return upstream, f"http://127.0.0.1:{port}/x"


BODY = bytes(range(256)) * 40  # 10,240 bytes


@pytest.mark.parametrize("pump", [True, False], ids=["pump", "httpx"])
async def test_a_body_that_arrives_one_byte_at_a_time(nursery: trio.Nursery, pump: bool) -> None:
    body = BODY[:300]
    script = Script([[head(len(body)), *(bytes([b]) for b in body)]], pause=0.0005)
    _, url = await serve(nursery, script)
    async with Fetcher(OPEN, pump=pump) as f:
        assert await fetch_all(f, url) == (200, body)


@pytest.mark.parametrize("pump", [True, False], ids=["pump", "httpx"])
async def test_head_and_body_in_one_segment(nursery: trio.Nursery, pump: bool) -> None:
    _, url = await serve(nursery, Script([[head(len(BODY)) + BODY]]))
    async with Fetcher(OPEN, pump=pump) as f:
        assert await fetch_all(f, url) == (200, BODY)


async def test_head_with_part_of_the_body_then_the_rest_into_small_buffers(
    nursery: trio.Nursery,
) -> None:
    script = Script([[head(len(BODY)) + BODY[:5000], BODY[5000:]]])
    _, url = await serve(nursery, script)
    async with Fetcher(OPEN) as f:
        assert await fetch_all(f, url, buffer_size=777) == (200, BODY)


@pytest.mark.parametrize("pump", [True, False], ids=["pump", "httpx"])
async def test_a_body_cut_short_is_a_network_error(nursery: trio.Nursery, pump: bool) -> None:
    script = Script([[head(len(BODY)), BODY[:4000]]], close_after={0})
    _, url = await serve(nursery, script)
    async with Fetcher(OPEN, pump=pump) as f:
        with pytest.raises(FetchError) as caught:
            await fetch_all(f, url)
    assert caught.value.key == "NETWORK_ERROR"


async def test_a_body_longer_than_announced_is_cut_at_its_length_and_not_reused(
    nursery: trio.Nursery,
) -> None:
    script = Script([[head(100) + BODY[:150]], [head(100) + BODY[:100]]])
    upstream, url = await serve(nursery, script)
    async with Fetcher(OPEN) as f:
        assert await fetch_all(f, url) == (200, BODY[:100])
        assert await fetch_all(f, url) == (200, BODY[:100])
    assert upstream.connections == 2  # the stray 50 bytes were never taken for a reply


async def test_extra_bytes_after_a_body_in_a_later_segment_are_not_taken_for_a_reply(
    nursery: trio.Nursery,
) -> None:
    script = Script([[head(100) + BODY[:100], b"HTTP/1.1 200 OK\r\n"], [head(3) + b"abc"]])
    upstream, url = await serve(nursery, script)
    async with Fetcher(OPEN) as f:
        assert await fetch_all(f, url) == (200, BODY[:100])
        await trio.sleep(0.05)  # the stray bytes arrive while the connection is idle
        assert await fetch_all(f, url) == (200, b"abc")
    assert upstream.connections == 2


async def test_keep_alive_reuses_one_connection(nursery: trio.Nursery) -> None:
    script = Script(
        [[head(len(BODY)) + BODY]] * 3
        + [[head(None, "Transfer-Encoding: chunked\r\n") + chunked(BODY, 1000)]]
    )
    upstream, url = await serve(nursery, script)
    async with Fetcher(OPEN) as f:
        for _ in range(4):
            assert await fetch_all(f, url) == (200, BODY)
    assert upstream.connections == 1


async def test_a_body_left_unread_closes_its_connection(nursery: trio.Nursery) -> None:
    script = Script([[head(len(BODY)) + BODY], [head(len(BODY)) + BODY]])
    upstream, url = await serve(nursery, script)
    async with Fetcher(OPEN) as f:
        async with f.stream(url) as got:
            assert await got.readinto(memoryview(bytearray(10))) == 10
        assert await fetch_all(f, url) == (200, BODY)
    assert upstream.connections == 2


async def test_connection_close_is_honoured(nursery: trio.Nursery) -> None:
    script = Script([[head(3, "Connection: close\r\n") + b"abc"], [head(3) + b"def"]])
    upstream, url = await serve(nursery, script)
    async with Fetcher(OPEN) as f:
        assert await fetch_all(f, url) == (200, b"abc")
        assert await fetch_all(f, url) == (200, b"def")
    assert upstream.connections == 2


async def test_a_pooled_connection_the_upstream_closed_is_replaced(nursery: trio.Nursery) -> None:
    # The upstream closes right after the first reply; the client only finds out when
    # it reuses the connection (the close may arrive after the check): sent again.
    script = Script([[head(3) + b"abc"], [head(3) + b"def"]], close_after={0})
    upstream, url = await serve(nursery, script)
    async with Fetcher(OPEN) as f:
        assert await fetch_all(f, url) == (200, b"abc")
        assert await fetch_all(f, url) == (200, b"def")
    assert upstream.connections == 2


@pytest.mark.parametrize("pump", [True, False], ids=["pump", "httpx"])
async def test_a_stalled_body_times_out(nursery: trio.Nursery, pump: bool) -> None:
    script = Script([[head(len(BODY)) + BODY[:10], BODY[10:]]], pause=5.0)
    _, url = await serve(nursery, script)
    async with Fetcher(OPEN, pump=pump, read_timeout=0.2) as f:
        with pytest.raises(FetchError) as caught:
            await fetch_all(f, url)
    assert caught.value.key == "DOWNLOAD_TIMEOUT"


async def test_a_length_over_int64_is_refused(nursery: trio.Nursery) -> None:
    _, url = await serve(nursery, Script([[head(2**63) + b"abc"]]))
    async with Fetcher(OPEN) as f:
        with pytest.raises(FetchError) as caught:
            await fetch_all(f, url)
    assert caught.value.key == "NETWORK_ERROR"


@st.composite
def replies(draw: st.DrawFn) -> tuple[bytes, list[bytes], bool]:
    """A body, the reply's bytes cut into segments, and whether it is chunked."""
    body = draw(st.binary(max_size=3000))
    is_chunked = draw(st.booleans())
    if is_chunked:
        wire = head(None, "Transfer-Encoding: chunked\r\n") + chunked(
            body, draw(st.integers(1, 700))
        )
    else:
        wire = head(len(body)) + body
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(wire) - 1)), max_size=6)))
    segments = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    return body, [s for s in segments if s], is_chunked


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reply=replies(), buffer_size=st.integers(1, 5000))
async def test_pump_and_httpx_read_the_same_bytes(
    reply: tuple[bytes, list[bytes], bool], buffer_size: int
) -> None:
    body, segments, _ = reply
    async with trio.open_nursery() as nursery:
        _, url = await serve(nursery, Script([segments, segments], pause=0.0005))
        async with Fetcher(OPEN, pump=True) as pumped, Fetcher(OPEN, pump=False) as reference:
            got = await fetch_all(pumped, url, buffer_size)
            want = await fetch_all(reference, url, buffer_size)
        nursery.cancel_scope.cancel()
    assert got == want == (200, body)


async def _drain(sock: trio.socket.SocketType, out: bytearray) -> None:
    while data := await sock.recv(65536):
        out += data


async def splice_all(
    fetcher: Fetcher, url: str, count: int | None = None
) -> tuple[bytes, int, FetchError | None]:
    """Splice ``count`` body bytes (default: all) into a socket pair: the bytes that
    arrived there, :attr:`Fetched.spliced`, and the error if the splice failed."""
    left, right = trio.socket.socketpair()
    received = bytearray()
    error: FetchError | None = None
    with left, right:
        async with fetcher.stream(url) as got, trio.open_nursery() as nursery:
            nursery.start_soon(_drain, right, received)
            assert got.can_splice
            size = int(got.headers["content-length"])
            try:
                await got.splice_to(left, size if count is None else count, 5.0)
            except FetchError as exc:
                error = exc
            finally:
                left.shutdown(socket.SHUT_WR)
    return bytes(received), got.spliced, error


async def test_splice_moves_the_buffered_bytes_then_the_rest(nursery: trio.Nursery) -> None:
    big = BODY * 200  # 2 MB: more than one pipe's worth
    script = Script([[head(len(big)) + big[:3000], big[3000:]], [head(3) + b"abc"]])
    upstream, url = await serve(nursery, script)
    async with Fetcher(OPEN) as f:
        assert await splice_all(f, url) == (big, len(big), None)
        assert await fetch_all(f, url) == (200, b"abc")
    assert upstream.connections == 1  # spliced to its end: the connection is reused


async def test_splice_of_a_part_of_the_body(nursery: trio.Nursery) -> None:
    _, url = await serve(nursery, Script([[head(len(BODY)), BODY]]))
    async with Fetcher(OPEN) as f:
        assert await splice_all(f, url, 5000) == (BODY[:5000], 5000, None)


async def test_splice_of_a_cut_body_counts_what_was_delivered(nursery: trio.Nursery) -> None:
    script = Script([[head(len(BODY)) + BODY[:100], BODY[100:4000]]], close_after={0})
    _, url = await serve(nursery, script)
    async with Fetcher(OPEN) as f:
        received, spliced, error = await splice_all(f, url)
    assert error is not None and error.key == "NETWORK_ERROR"
    assert received == BODY[:4000] and spliced == 4000


async def test_a_chunked_or_httpx_body_cannot_be_spliced(nursery: trio.Nursery) -> None:
    wire = head(None, "Transfer-Encoding: chunked\r\n") + chunked(BODY, 999)
    _, url = await serve(nursery, Script([[wire], [head(3) + b"abc"]]))
    async with Fetcher(OPEN) as f, f.stream(url) as got:
        assert not got.can_splice
    async with Fetcher(OPEN, pump=False) as f, f.stream(url) as got:
        assert not got.can_splice


async def test_idle_connections_to_hosts_not_asked_again_are_closed(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    first, url_a = await serve(nursery, Script([[head(3) + b"abc"]]))
    _, url_b = await serve(nursery, Script([[head(3) + b"def"], [head(3) + b"ghi"]]))
    async with Fetcher(OPEN) as f:
        assert await fetch_all(f, url_a) == (200, b"abc")
        assert await fetch_all(f, url_b) == (200, b"def")
        assert f.pool.idle_count() == 2
        mock_clock.jump(f.pool.keepalive_expiry + 1)
        assert await fetch_all(f, url_b) == (200, b"ghi")  # B's expired too: a new one
        assert f.pool.idle_count() == 1  # A's was closed, though A was not asked again
    assert first.connections == 1


@pytest.mark.parametrize("pump", [True, False], ids=["pump", "httpx"])
async def test_fill_reads_whole_blocks_until_the_end(nursery: trio.Nursery, pump: bool) -> None:
    script = Script([[head(len(BODY)) + BODY[:100], BODY[100:3000], BODY[3000:]]])
    _, url = await serve(nursery, script)
    async with Fetcher(OPEN, pump=pump) as f, f.stream(url) as got:
        block = memoryview(bytearray(4096))
        assert await got.fill(block) == 4096 and block == BODY[:4096]
        assert await got.fill(block) == 4096 and block == BODY[4096:8192]
        assert await got.fill(block) == len(BODY) - 8192
        assert block[: len(BODY) - 8192] == BODY[8192:]
        assert await got.fill(block) == 0

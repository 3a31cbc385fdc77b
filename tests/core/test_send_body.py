"""``send_body``: one entry for every reply body, the head sent by the writer."""

from __future__ import annotations

from typing import Any

import trio

from slipstream.segments import Literal, SegmentMap
from slipstream.send import COALESCE_LIMIT, BodyWriter, StreamedBody, send_body

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"


class Recorder:
    """Stands in for the socket stream: records each ``send_all``."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.sends.append(bytes(data))


def stream(recorder: Recorder) -> Any:
    return recorder


class Pieces(StreamedBody):
    """A streamed body of small pieces (coalesced) and relayed chunks (sent as they are)."""

    def __init__(self, small: list[bytes], relayed: list[bytes]) -> None:
        self.small = small
        self.relayed = relayed

    @property
    def total(self) -> int:
        return sum(map(len, self.small + self.relayed))

    async def write(self, out: BodyWriter) -> None:
        for piece in self.small:
            await out.write(piece)
        for chunk in self.relayed:
            await out.send(chunk)


async def test_bytes_leave_with_the_head() -> None:
    recorder = Recorder()
    await send_body(stream(recorder), b"123456789", head=HEAD)
    assert recorder.sends == [HEAD + b"123456789"]


async def test_a_small_segment_map_leaves_with_the_head() -> None:
    recorder = Recorder()
    body = SegmentMap([Literal(b"1234"), Literal(b"56789")])
    await send_body(stream(recorder), body, head=HEAD)
    assert recorder.sends == [HEAD + b"123456789"]


async def test_a_streamed_body_does_not_send_the_head_itself() -> None:
    recorder = Recorder()
    body = Pieces([b"abc", b"def"], [b"R" * 10, b"S" * 10])
    await send_body(stream(recorder), body, head=HEAD)
    # The writer sends the head with the body's first small pieces, then each relayed
    # chunk as it is.
    assert recorder.sends == [HEAD + b"abcdef", b"R" * 10, b"S" * 10]


async def test_a_streamed_body_of_small_pieces_is_one_send() -> None:
    recorder = Recorder()
    await send_body(stream(recorder), Pieces([b"a", b"b", b"c"], []), head=HEAD)
    assert recorder.sends == [HEAD + b"abc"]


async def test_a_piece_over_the_coalesce_limit_goes_out_alone() -> None:
    recorder = Recorder()
    big = b"B" * COALESCE_LIMIT
    await send_body(stream(recorder), Pieces([b"a", big, b"z"], []), head=HEAD)
    assert recorder.sends == [HEAD + b"a", big, b"z"]
    assert b"".join(recorder.sends) == HEAD + b"a" + big + b"z"

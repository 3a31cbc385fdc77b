"""multipart/byteranges bodies built as segment maps."""

from __future__ import annotations

import email
import email.message
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.http.multipart import build_multipart, multipart_content_type, new_boundary
from slipstream.http.ranges import ByteRange
from slipstream.segments import FileSlice, Literal, SegmentMap, literal_map


def body_bytes(body: SegmentMap) -> bytes:
    """Join a map made only of literals."""
    out = bytearray()
    for segment in body.segments:
        assert isinstance(segment, Literal)
        out += segment.data
    return bytes(out)


def parse(raw: bytes, boundary: str) -> list[email.message.Message]:
    head = f"Content-Type: {multipart_content_type(boundary)}\r\n\r\n".encode()
    message = email.message_from_bytes(head + raw)
    assert message.is_multipart()
    assert not message.defects
    parts = message.get_payload()
    assert isinstance(parts, list)
    assert all(isinstance(part, email.message.Message) for part in parts)
    return [part for part in parts if isinstance(part, email.message.Message)]


def test_boundary_and_content_type() -> None:
    boundary = new_boundary()
    assert re.fullmatch(r"[0-9a-f]{20}", boundary)
    assert new_boundary() != boundary
    assert multipart_content_type("abc") == "multipart/byteranges; boundary=abc"


def test_exact_layout() -> None:
    body = literal_map(b"0123456789")
    result = build_multipart(body, [ByteRange(0, 2), ByteRange(8, 10)], "text/plain", "XYZ")
    expected = (
        b"--XYZ\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Range: bytes 0-1/10\r\n"
        b"\r\n"
        b"01"
        b"\r\n--XYZ\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Range: bytes 8-9/10\r\n"
        b"\r\n"
        b"89"
        b"\r\n--XYZ--\r\n"
    )
    assert body_bytes(result) == expected
    assert len(result) == len(expected)


def test_content_type_line_omitted_when_empty() -> None:
    result = build_multipart(literal_map(b"abc"), [ByteRange(1, 2)], "", "B")
    assert body_bytes(result) == b"--B\r\nContent-Range: bytes 1-1/3\r\n\r\nb\r\n--B--\r\n"


def test_file_slices_stay_zero_copy() -> None:
    source = object()
    body = SegmentMap([FileSlice(source, 100, 50), FileSlice(source, 1000, 50)])
    result = build_multipart(body, [ByteRange(40, 60)], "application/octet-stream", "B")
    segments = result.segments
    assert segments[1:3] == (FileSlice(source, 140, 10), FileSlice(source, 1000, 10))
    assert isinstance(segments[0], Literal) and isinstance(segments[-1], Literal)
    assert b"Content-Range: bytes 40-59/100\r\n" in bytes(segments[0].data)
    assert len(result) == sum(s.length for s in segments)


def test_rejects_no_ranges_and_out_of_body_ranges() -> None:
    with pytest.raises(ValueError):
        build_multipart(literal_map(b"abc"), [], "text/plain", "B")
    with pytest.raises(IndexError):
        build_multipart(literal_map(b"abc"), [ByteRange(2, 4)], "text/plain", "B")


@st.composite
def body_and_ranges(draw: st.DrawFn) -> tuple[bytes, list[ByteRange]]:
    # No "-" in the body, so it can never contain a boundary delimiter line.
    data = draw(st.binary(min_size=1, max_size=400)).replace(b"-", b"_")
    size = len(data)
    starts = st.integers(0, size - 1)
    pairs = draw(st.lists(st.tuples(starts, st.integers(1, size)), min_size=1, max_size=6))
    ranges = [ByteRange(start, min(start + length, size)) for start, length in pairs]
    return data, ranges


@settings(max_examples=100, deadline=None)
@given(body_and_ranges(), st.sampled_from(["application/octet-stream", "text/plain", ""]))
def test_parses_back_with_email(case: tuple[bytes, list[ByteRange]], content_type: str) -> None:
    data, ranges = case
    boundary = new_boundary()
    result = build_multipart(literal_map(data), ranges, content_type, boundary)
    raw = body_bytes(result)
    assert len(raw) == len(result)

    parts = parse(raw, boundary)
    assert len(parts) == len(ranges)
    for part, byte_range in zip(parts, ranges, strict=True):
        assert (
            part["Content-Range"] == f"bytes {byte_range.start}-{byte_range.stop - 1}/{len(data)}"
        )
        assert part["Content-Type"] == (content_type or None)
        assert part.get_payload(decode=True) == data[byte_range.start : byte_range.stop]


@settings(max_examples=50, deadline=None)
@given(body_and_ranges(), st.integers(1, 5))
def test_multi_segment_body(case: tuple[bytes, list[ByteRange]], pieces: int) -> None:
    """The body may be split over several segments; the result is the same bytes."""
    data, ranges = case
    cut = max(len(data) // pieces, 1)
    split = SegmentMap([Literal(data[i : i + cut]) for i in range(0, len(data), cut)])
    whole = build_multipart(literal_map(data), ranges, "text/plain", "B0")
    pieced = build_multipart(split, ranges, "text/plain", "B0")
    assert body_bytes(pieced) == body_bytes(whole)
    assert len(pieced) == len(whole)

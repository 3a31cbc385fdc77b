"""The one reply function under the RFC 9110 policy: status, header fields, body slice."""

from __future__ import annotations

import re

import pytest

from slipstream.errors import PreconditionFailed, RangeNotSatisfiable
from slipstream.http.dates import http_date
from slipstream.http.reply import RFC9110, Refusal, Reply, Rfc9110Ranges, decide_reply
from slipstream.http.representation import Representation
from slipstream.http.validators import Validators
from slipstream.segments import Literal, SegmentMap
from tests.helpers.streamed import Part, RecordingSource

DATA = b"0123456789abcdefghij"  # 20 bytes
ETAG = '"v1"'
MTIME = 784111777
VALIDATORS = Validators(ETAG, MTIME)
COMMON = [("ETag", ETAG), ("Last-Modified", http_date(MTIME)), ("Accept-Ranges", "bytes")]
OWN = [("Content-Disposition", 'attachment; filename="f.txt"'), ("X-Own", "1")]


def representation(policy: Rfc9110Ranges = RFC9110) -> Representation[Refusal]:
    # Several literals, so that slices cross segment boundaries.
    pieces = [DATA[i : i + 6] for i in range(0, len(DATA), 6)]
    return Representation(
        body=SegmentMap([Literal(piece) for piece in pieces]),
        validators=VALIDATORS,
        policy=policy,
        content_type="text/plain",
        headers=list(OWN),
    )


def body_bytes(reply: Reply) -> bytes:
    assert isinstance(reply.body, SegmentMap)
    out = bytearray()
    for segment in reply.body.segments:
        assert isinstance(segment, Literal)
        out += segment.data
    assert len(out) == reply.body.total
    return bytes(out)


def decide(headers: dict[str, str], method: str = "GET") -> Reply | Refusal:
    return decide_reply(method, headers, representation())


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_no_range_is_the_whole_body(method: str) -> None:
    rep = representation()
    reply = decide_reply(method, {}, rep)
    assert isinstance(reply, Reply)
    assert reply.status == 200
    assert reply.headers == [("Content-Type", "text/plain"), *COMMON, *OWN]
    assert reply.body is rep.body


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=5-14", 5, 15),
        ("bytes=15-", 15, 20),
        ("bytes=-3", 17, 20),
        ("bytes=0-", 0, 20),
        ("bytes=3-5,4-8", 3, 9),  # coalesced into one range
    ],
)
def test_one_range_is_a_206_with_content_range(header: str, start: int, stop: int) -> None:
    reply = decide({"range": header})
    assert isinstance(reply, Reply)
    assert reply.status == 206
    assert reply.headers == [
        ("Content-Type", "text/plain"),
        ("Content-Range", f"bytes {start}-{stop - 1}/20"),
        *COMMON,
        *OWN,
    ]
    assert body_bytes(reply) == DATA[start:stop]


def test_several_ranges_are_a_multipart_206() -> None:
    reply = decide({"range": "bytes=0-1,18-"})
    assert isinstance(reply, Reply)
    assert reply.status == 206
    content_type = reply.headers[0]
    assert content_type[0] == "Content-Type"
    found = re.fullmatch(r"multipart/byteranges; boundary=([0-9a-f]{20})", content_type[1])
    assert found is not None
    boundary = found[1]
    assert reply.headers[1:] == [*COMMON, *OWN]
    part = "Content-Type: text/plain\r\nContent-Range: bytes {}/20\r\n\r\n{}"
    assert (
        body_bytes(reply)
        == (
            f"--{boundary}\r\n{part.format('0-1', '01')}"
            f"\r\n--{boundary}\r\n{part.format('18-19', 'ij')}"
            f"\r\n--{boundary}--\r\n"
        ).encode()
    )


@pytest.mark.parametrize(
    "header",
    [
        "items=0-1",  # another unit: ignored
        "bytes=0-14,5-19",  # overlapping ranges adding up to more than the body
        "bytes=" + ",".join(f"{i}-{i}" for i in range(17)),  # more than 16 parts
    ],
)
def test_ranges_nginx_serves_whole(header: str) -> None:
    reply = decide({"range": header})
    assert isinstance(reply, Reply) and reply.status == 200
    assert body_bytes(reply) == DATA


def test_max_parts_is_the_policys() -> None:
    reply = decide_reply("GET", {"range": "bytes=0-0,2-2,4-4"}, representation(Rfc9110Ranges(2)))
    assert isinstance(reply, Reply) and reply.status == 200


@pytest.mark.parametrize("header", ["bytes=20-", "bytes=-0", "bytes=abc", "bytes=5-2"])
def test_unsatisfiable_or_malformed_is_the_policys_416(header: str) -> None:
    refusal = decide({"range": header})
    assert isinstance(refusal, RangeNotSatisfiable)
    assert refusal.size == 20


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"if-range": ETAG}, 206),
        ({"if-range": http_date(MTIME)}, 206),
        ({"if-range": '"v0"'}, 200),
        ({"if-range": 'W/"v1"'}, 200),
        ({"if-range": http_date(MTIME + 1)}, 200),
        ({"if-range": "garbage"}, 200),
    ],
)
def test_if_range(headers: dict[str, str], status: int) -> None:
    reply = decide({"range": "bytes=0-4", **headers})
    assert isinstance(reply, Reply) and reply.status == status


def test_if_range_that_fails_also_ignores_an_unsatisfiable_range() -> None:
    reply = decide({"range": "bytes=99-", "if-range": '"v0"'})
    assert isinstance(reply, Reply) and reply.status == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"if-none-match": ETAG},
        {"if-none-match": "*"},
        {"if-modified-since": http_date(MTIME)},
        {"if-none-match": ETAG, "range": "bytes=0-1"},
    ],
)
def test_not_modified_has_the_validators_only(headers: dict[str, str]) -> None:
    reply = decide(headers)
    assert isinstance(reply, Reply)
    assert (reply.status, reply.headers, reply.body) == (304, COMMON, None)


@pytest.mark.parametrize(
    "headers",
    [{"if-match": '"v0"'}, {"if-unmodified-since": http_date(MTIME - 1)}],
)
def test_failed_precondition_is_the_policys_412(headers: dict[str, str]) -> None:
    assert isinstance(decide({**headers, "range": "bytes=0-1"}), PreconditionFailed)


# --- a streamed body under the RFC policy ---------------------------------------------


def test_a_streamed_body_makes_the_part_it_needs() -> None:
    source = RecordingSource(100)
    rep: Representation[Refusal] = Representation(source, VALIDATORS, RFC9110)
    whole = decide_reply("GET", {}, rep)
    ranged = decide_reply("GET", {"range": "bytes=10-19"}, rep)
    assert isinstance(whole, Reply) and whole.status == 200 and whole.body == Part(0, 100)
    assert isinstance(ranged, Reply) and ranged.status == 206 and ranged.body == Part(10, 20)
    assert ("Content-Range", "bytes 10-19/100") in ranged.headers
    # No multipart form for a streamed body: the whole of it instead.
    several = decide_reply("GET", {"range": "bytes=0-1,50-51"}, rep)
    assert isinstance(several, Reply) and several.status == 200 and several.body == Part(0, 100)
    assert source.made == [(0, 100), (10, 20), (0, 100)]

"""``slipstream.wsprotocol``: the numbers of the websocket protocol and its packet schema."""

from __future__ import annotations

import json

import pytest

from slipstream.wsprotocol import (
    CLOSE_REASONS,
    CloseCode,
    CreateDownloadUrl,
    Initialize,
    InvalidPacket,
    PacketType,
    Status,
    SubscribeDownloads,
    decode_packet,
    encode,
    parse_packet,
    rate_limited_reason,
)


def test_the_numbers_are_the_contracts() -> None:
    assert [int(t) for t in PacketType] == [1, 7, 20]
    assert {s.constant: int(s) for s in Status} == {
        "Ok": 1,
        "NotAuthorized": 3,
        "InternalServerError": 6,
        "FileNotFound": 300,
        "FileInvalidResumeOffset": 303,
    }
    assert {int(code): reason for code, reason in CLOSE_REASONS.items()} == {
        4200: "connection is not initialized",
        4201: "rate limit hit",
        4302: "invalid request body",
        4304: "received unsupported data",
    }
    assert rate_limited_reason(7) == "rate limited, 7 seconds left"
    assert (CloseCode.NORMAL, CloseCode.GOING_AWAY) == (1000, 1001)


def test_members_travel_as_plain_numbers() -> None:
    assert encode({"id": 3, "status": Status.FILE_NOT_FOUND}) == '{"id":3,"status":300}'
    assert json.dumps({"type": PacketType.CREATE_DOWNLOAD_URL}) == '{"type": 7}'
    assert f"{CloseCode.INVALID_REQUEST_BODY}" == "4302"


def test_packets_parse_into_their_types() -> None:
    initialize = parse_packet(decode_packet('{"type": 1, "id": 1, "token": "t"}'))
    assert initialize == Initialize(1, "t", None)
    create = parse_packet(decode_packet('{"type":7,"id":2,"filename":"a","resume_at":0,"x":1}'))
    assert create == CreateDownloadUrl(2, "a", 0)
    assert parse_packet(decode_packet('{"type": 20, "id": 3}')) == SubscribeDownloads(3)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1]",
        '{"type": "1"}',
        '{"type": true, "id": 1}',
        '{"type": 2, "id": 1}',
        '{"type": 1, "id": true, "token": "t"}',
        '{"type": 1, "id": 1}',
        '{"type": 1, "id": 1, "token": "t", "application": 5}',
        '{"type": 7, "id": 1, "filename": "a", "resume_at": 1.0}',
        "[" * 100_000,
    ],
)
def test_invalid_packets(text: str) -> None:
    with pytest.raises(InvalidPacket):
        parse_packet(decode_packet(text))

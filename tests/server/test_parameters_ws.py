"""Every field of every websocket packet, thrown arbitrary JSON values: never a crash,
always the documented reply or close code (``resume_at`` past the end -> status 303, a
field of the wrong type -> close 4302...).

The fields are the ``ws`` rows of :data:`~tests.helpers.parameters.PARAMETERS`; each
packet is sent after a successful Initialize (except for type 1's own fields), with the
other fields at a valid baseline.  One ``slipstream serve`` subprocess serves the whole
module, as for the HTTP parameters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio_websocket
from hypothesis import given, settings

from slipstream.wsprotocol import CloseCode
from tests.helpers.hostile_values import UNPARSABLE, as_parsed, is_int, json_object, json_values
from tests.helpers.parameters import (
    EXAMPLES,
    PARAMETERS,
    SMALL,
    TOKEN,
    Param,
    Server,
    parameter_server,
    tricky_values,
)

WS_PARAMETERS = [p for p in PARAMETERS if p.where == "ws"]

WS_BASELINES: dict[str, dict[str, Any]] = {
    "WS packet": {"id": 1},
    "WS type 1": {"type": 1, "id": 1, "token": TOKEN},
    "WS type 7": {"type": 7, "id": 1, "filename": "small.txt", "resume_at": 0},
    "WS type 20": {"type": 20, "id": 1},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ``slipstream serve`` subprocess for the whole module."""
    with parameter_server(tmp_path_factory.mktemp("parameters")) as served:
        yield served


async def ws_outcome(server: Server, frame: str) -> tuple[str, Any]:
    """Initialize, send ``frame``: ``("reply", packet)`` or ``("close", code)``."""
    url = f"ws://127.0.0.1:{server.port}/ws"
    with trio.fail_after(10):
        async with trio_websocket.open_websocket_url(url) as ws:
            await ws.send_message(json.dumps({"type": 1, "id": 0, "token": TOKEN}))
            assert json.loads(await ws.get_message()) == {"id": 0, "status": 1}
            await ws.send_message(frame)
            try:
                return "reply", json.loads(await ws.get_message())
            except trio_websocket.ConnectionClosed as closed:
                assert closed.reason is not None
                return "close", closed.reason.code


def expected_ws(param: Param, seen: Any) -> tuple[str, Any]:
    """What the server must answer when ``param`` holds ``seen`` (the parsed value)."""
    bad = ("close", CloseCode.INVALID_REQUEST_BODY)
    if seen is UNPARSABLE:
        return bad
    if param.name == "type":
        return ("reply", {"id": 1, "status": 1}) if is_int(seen) and seen == 20 else bad
    if param.name in ("id", "resume_at") and not is_int(seen):
        return bad
    if param.name in ("token", "filename") and not isinstance(seen, str):
        return bad
    if param.name == "application" and not (seen is None or isinstance(seen, str)):
        return bad
    ident = seen if param.name == "id" else 1
    if param.route == "WS type 1":
        ok = param.name != "token" or seen == TOKEN
        ok = ok and (param.name != "application" or seen in (None, "game"))
        return "reply", {"id": ident, "status": 1 if ok else 3}
    if param.route == "WS type 20":
        return "reply", {"id": ident, "status": 1}
    if param.name == "resume_at":
        return "reply", {"id": 1, "status": 1 if 0 <= seen < len(SMALL) else 303}
    return "reply", {"id": ident, "status": None}  # filename / id: any type-7 status


@pytest.mark.parametrize("param", WS_PARAMETERS, ids=str)
async def test_websocket_field_tricky_values(server: Server, param: Param) -> None:
    for value in tricky_values(param):
        await check_websocket_field(server, param, value)


@pytest.mark.parametrize("param", WS_PARAMETERS, ids=str)
@settings(max_examples=EXAMPLES, deadline=None)
@given(value=json_values)
async def test_websocket_field(server: Server, param: Param, value: Any) -> None:
    await check_websocket_field(server, param, value)


async def check_websocket_field(server: Server, param: Param, value: Any) -> None:
    frame = json_object({**WS_BASELINES[param.route], param.name: value})
    kind, got = await ws_outcome(server, frame)
    expected_kind, expected = expected_ws(param, as_parsed(value))
    assert kind == expected_kind, (frame[:200], got)
    if kind == "close":
        assert got == expected, (frame[:200], got)
        return
    if expected.get("status") is not None:
        assert {k: got.get(k) for k in expected} == expected, (frame[:200], got)
        return
    assert got["id"] == expected["id"], (frame[:200], got)
    assert got["status"] in (1, 3, 300, 303), got

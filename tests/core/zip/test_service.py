"""``slipstream.zip.service`` without a server: the purge of expired manifests (on trio's
mock clock), refusing invalid prefixes, and the stored form of a manifest."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from slipstream.errors import StateUnavailable
from slipstream.fetch import Fetcher
from slipstream.netpolicy import NetworkPolicy
from slipstream.zip.remote import RemoteObject
from slipstream.zip.service import STORE_RETRY, SWEEP_INTERVAL, Manifest, ZipService
from slipstream.zip.state import ZipState

SECRET = "Bearer ttl-bound-credential-5d2a"


def stored(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return {str(i): str(d) for i, d in db.execute("SELECT id, data FROM manifests")}


async def erased(path: Path, ident: str, *, within: float) -> float:
    """Poll until manifest ``ident``'s data is erased; the (mock) time it was seen."""
    with trio.fail_after(within):
        while stored(path)[ident] != "{}":
            await trio.sleep(0.05)
    return trio.current_time()


async def test_run_erases_what_the_ttl_ended_when_it_ends(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    # The purge runs in a worker thread, which takes real time: an autojumping clock
    # would race it, so mock time runs at 100x real time instead.
    mock_clock.rate = 100
    path = tmp_path / "zip.sqlite3"
    ttl = 3 * SWEEP_INTERVAL + 7  # ends between two sweeps (every SWEEP_INTERVAL)
    with ZipState(path, ttl=ttl, clock=trio.current_time) as state:
        async with Fetcher(NetworkPolicy()) as fetcher, trio.open_nursery() as nursery:
            service = ZipService(fetcher, state, ["http://u.example/"])
            await nursery.start(service.run)
            start = trio.current_time()
            state.save_manifest("old", {"headers": [["Authorization", SECRET]]})
            await trio.sleep(SWEEP_INTERVAL)
            state.save_manifest("new", {"headers": [["Cookie", "young"]]})
            gone = await erased(path, "old", within=ttl)
            assert ttl <= gone - start < ttl + SWEEP_INTERVAL / 2  # at its ttl, not a sweep
            assert stored(path) == {"old": "{}", "new": '{"headers":[["Cookie","young"]]}'}
            assert state.status("old") == "expired"
            gone = await erased(path, "new", within=2 * SWEEP_INTERVAL)
            assert ttl <= gone - start - SWEEP_INTERVAL < ttl + SWEEP_INTERVAL / 2
            nursery.cancel_scope.cancel()


async def test_invalid_prefixes_are_refused() -> None:
    async with Fetcher(NetworkPolicy()) as fetcher:
        with ZipState(":memory:") as state, pytest.raises(ValueError, match="'ftp://u/'"):
            ZipService(fetcher, state, ["ftp://u/"])


def manifest(*objects: RemoteObject) -> Manifest:
    return Manifest(
        id="0b7e1c52-5f9e-4f55-9d43-0d6b2f1f2a11",
        file_name="download.zip",
        response_format="json",
        error_redirect_uri=None,
        headers=(("X-Key", "v"),),
        objects=objects,
        names=tuple(f"m{n}" for n in range(len(objects))),
        created=1_700_000_000.0,
    )


def test_the_range_support_seen_by_the_probe_survives_storage() -> None:
    original = manifest(
        RemoteObject("http://a/x", 10, '"e"', None, None, ranges=False),
        RemoteObject("http://a/y", 20, None, "Wed, 21 Oct 2015 07:28:00 GMT", None),
    )
    stored = json.loads(json.dumps(original.to_json()))
    again = Manifest.from_json(stored)
    assert again == original
    assert [obj.ranges for obj in again.objects] == [False, True]


def test_manifests_stored_before_range_support_was_recorded_still_load() -> None:
    old = manifest(RemoteObject("http://a/x", 10, '"e"', None, 'attachment; filename="n"'))
    data = old.to_json()
    data["objects"] = [fields[:5] for fields in data["objects"]]  # the old five fields
    loaded = Manifest.from_json(data)
    assert loaded.objects == old.objects
    assert loaded.objects[0].ranges is True
    assert loaded.etag == old.etag


class Refusing:
    """Makes a ZipState's writes fail as a full disk does while ``full`` is true."""

    def __init__(self, state: ZipState, monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
        self.full = True
        for name in names:
            original = getattr(state, name)

            def refusing(*args: object, _original: Any = original) -> Any:
                if self.full:
                    raise StateUnavailable()
                return _original(*args)

            monkeypatch.setattr(state, name, refusing)


async def expired_in_the_store(state: ZipState, ident: str) -> None:
    """Poll (on the mock clock) until the store records ``ident`` as expired."""
    with trio.fail_after(3 * STORE_RETRY):
        while state.status(ident) != "expired":
            await trio.sleep(0.5)


async def test_deliveries_the_store_refused_are_written_later_and_expire_the_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.rate = 100  # the writes run in worker threads (see above)
    with ZipState(tmp_path / "zip.sqlite3") as state:
        disk = Refusing(state, monkeypatch, "record_delivered")
        async with Fetcher(NetworkPolicy()) as fetcher, trio.open_nursery() as nursery:
            service = ZipService(fetcher, state, ["http://u.example/"])
            await nursery.start(service.run)
            state.save_manifest("m", {})
            for start in (0, 5):  # every byte, in two replies, while the disk is full
                service.begin("m")
                await service.delivered("m", start, start + 5, 10)
                await service.release("m")
            assert state.delivered("m") == [] and state.status("m") == "live"
            await trio.sleep(3 * STORE_RETRY)
            assert state.status("m") == "live"  # still refused: nothing lost, nothing done
            disk.full = False
            await expired_in_the_store(state, "m")
            nursery.cancel_scope.cancel()


async def test_an_expiry_the_store_refused_holds_at_once_and_is_written_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.rate = 100
    with ZipState(tmp_path / "zip.sqlite3") as state:
        disk = Refusing(state, monkeypatch, "expire")
        async with Fetcher(NetworkPolicy()) as fetcher, trio.open_nursery() as nursery:
            service = ZipService(fetcher, state, ["http://u.example/"])
            await nursery.start(service.run)
            state.save_manifest("m", {})
            service.begin("m")
            await service.delivered("m", 0, 10, 10)
            await service.release("m")  # fully delivered: the stream expires now
            assert await service.manifest("m") is None
            assert state.status("m") == "live"  # the store has not heard of it yet
            disk.full = False
            await expired_in_the_store(state, "m")
            assert await service.manifest("m") is None
            nursery.cancel_scope.cancel()

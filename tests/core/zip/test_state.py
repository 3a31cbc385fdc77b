"""``slipstream.zip.state``: manifests, delivery coverage and the CRC-32 cache in SQLite."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.zip.state import DEFAULT_TTL, TOMBSTONE_RETENTION, ZipState, covers, merge_interval

MANIFEST: dict[str, Any] = {
    "file_name": "download \u00e9t\u00e9.zip",
    "response_format": "json",
    "error_redirect_uri": None,
    "headers": [["Authorization", "Bearer x"]],
    "objects": [
        {"uri": "https://a.example/1", "size": 10, "etag": '"e1"', "last_modified": None},
        {"uri": "https://a.example/2", "size": 0, "etag": None, "last_modified": "Mon"},
    ],
    "etag": '"zip-1"',
    "created": 1700000000.5,
}


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def count_rows(path: Path | str, table: str) -> int:
    with sqlite3.connect(path) as db:
        (rows,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(rows)


# --- manifests ----------------------------------------------------------------------


def test_manifest_round_trip_and_unknown(tmp_path: Path) -> None:
    with ZipState(tmp_path / "zip.sqlite3") as state:
        state.save_manifest("m1", MANIFEST)
        assert state.load_manifest("m1") == MANIFEST
        assert state.load_manifest("m2") is None


def test_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "zip.sqlite3"  # parents are created
    state = ZipState(path)
    state.save_manifest("m1", MANIFEST)
    state.save_manifest("gone", {"a": 1})
    state.expire("gone")
    assert state.record_delivered("m1", 0, 4, 10) is False
    state.put_crc("https://a.example/1", 10, '"e1"', 0xDEADBEEF)
    state.close()
    state.close()  # idempotent

    reopened = ZipState(path)
    try:
        assert reopened.load_manifest("m1") == MANIFEST
        assert reopened.load_manifest("gone") is None
        assert reopened.delivered("m1") == [(0, 4)]
        assert reopened.record_delivered("m1", 4, 10, 10) is True
        assert reopened.get_crc("https://a.example/1", 10, '"e1"') == 0xDEADBEEF
    finally:
        reopened.close()


def test_two_connections_see_each_other(tmp_path: Path) -> None:
    path = tmp_path / "zip.sqlite3"
    with ZipState(path) as one, ZipState(path) as two:
        one.save_manifest("m", {"x": 1})
        assert two.load_manifest("m") == {"x": 1}
        assert one.record_delivered("m", 0, 5, 10) is False
        assert two.record_delivered("m", 5, 10, 10) is True
        assert one.delivered("m") == [(0, 10)]


def manifest_rows(path: Path) -> dict[str, tuple[str, int]]:
    """id -> (data, expired) of every stored manifest row, tombstones included."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, data, expired FROM manifests").fetchall()
    return {str(i): (str(data), int(expired)) for i, data, expired in rows}


def test_ttl_with_injected_clock(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "zip.sqlite3"
    with ZipState(path, ttl=100.0, clock=clock, retain=50.0) as state:
        state.save_manifest("m", MANIFEST)
        assert state.next_expiry() == clock.now + 100
        clock.now += 99
        assert state.load_manifest("m") == MANIFEST
        assert state.is_live("m")
        assert state.status("m") == "live"
        assert state.purge() == 0
        clock.now += 1  # exactly ttl seconds after saving: gone
        assert state.load_manifest("m") is None
        assert not state.is_live("m")
        assert state.status("m") == "expired"
        assert state.purge() == 1  # the data is erased, a tombstone stays
        assert manifest_rows(path) == {"m": ("{}", 1)}
        assert state.next_expiry() is None
        assert state.record_delivered("m", 0, 1, 1) is False  # nothing to deliver now
        clock.now += 50  # ttl + retain after saving: the tombstone goes too
        assert state.purge() == 1
        assert manifest_rows(path) == {}
        assert state.status("m") is None


def test_an_id_is_never_saved_twice(tmp_path: Path) -> None:
    clock = Clock()
    with ZipState(tmp_path / "zip.sqlite3", ttl=100.0, clock=clock) as state:
        assert state.save_manifest("m", {"v": 1}) is True
        assert state.save_manifest("m", {"v": 2}) is False  # live: kept as it is
        assert state.load_manifest("m") == {"v": 1}
        assert state.record_delivered("m", 0, 3, 10) is False
        state.expire("m")
        clock.now += 150
        state.purge()
        assert state.save_manifest("m", {"v": 3}) is False  # expired: not revived
        assert state.load_manifest("m") is None
        assert state.status("m") == "expired"


def test_expired_data_is_erased_from_the_files(tmp_path: Path) -> None:
    """Forwarded credentials must not outlive their stream, not even in freed pages or
    in the write-ahead log."""
    secret = b"Bearer credential-4f0b2c"
    path = tmp_path / "zip.sqlite3"

    def on_disk() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("zip"))

    with ZipState(path) as state:
        big = {"headers": [["Authorization", secret.decode()]], "pad": "x" * 20_000}
        state.save_manifest("m", big)
        state.save_manifest("other", {"n": 1})
        assert secret in on_disk()
        state.expire("m")
        assert secret not in on_disk()
        assert state.load_manifest("other") == {"n": 1}


def test_ttl_expiry_erases_the_data_too(tmp_path: Path) -> None:
    clock = Clock()
    secret = b"cookie=ttl-secret-91a7"
    path = tmp_path / "zip.sqlite3"
    with ZipState(path, ttl=10.0, clock=clock) as state:
        state.save_manifest("m", {"headers": [["Cookie", secret.decode()]]})
        clock.now += 10
        state.purge()
        data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
        assert secret not in data


def test_reopen_erases_what_the_ttl_ended(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "zip.sqlite3"
    with ZipState(path, ttl=10.0, clock=clock) as state:
        state.save_manifest("old", {"h": 1})
        clock.now += 5
        state.save_manifest("new", {})
    clock.now += 6
    with ZipState(path, ttl=10.0, clock=clock) as state:
        assert manifest_rows(path) == {"old": ("{}", 1), "new": ("{}", 0)}
        assert state.load_manifest("new") == {}


def test_reopen_erases_rows_an_older_version_expired(tmp_path: Path) -> None:
    path = tmp_path / "zip.sqlite3"
    with ZipState(path) as state:
        state.save_manifest("m", {"h": "secret"})
    with sqlite3.connect(path) as db:  # how expiry used to look: the flag, data kept
        db.execute("UPDATE manifests SET expired = 1")
    with ZipState(path) as state:
        assert manifest_rows(path) == {"m": ("{}", 1)}
        assert state.status("m") == "expired"


def test_default_ttl_is_seven_days(tmp_path: Path) -> None:
    clock = Clock()
    assert DEFAULT_TTL == 7 * 86400
    with ZipState(tmp_path / "zip.sqlite3", clock=clock) as state:
        state.save_manifest("m", {})
        clock.now += 7 * 86400 - 1
        assert state.load_manifest("m") == {}
        clock.now += 1
        assert state.load_manifest("m") is None


def test_expire_and_purge(tmp_path: Path) -> None:
    path = tmp_path / "zip.sqlite3"
    clock = Clock()
    with ZipState(path, clock=clock) as state:
        state.save_manifest("a", {"n": "a"})
        state.save_manifest("b", {"n": "b"})
        state.expire("a")
        state.expire("unknown")  # no error
        assert state.load_manifest("a") is None
        assert not state.is_live("a")
        assert state.status("a") == "expired"
        assert state.load_manifest("b") == {"n": "b"}
        assert state.is_live("b")
        assert not state.is_live("unknown")
        assert state.status("unknown") is None
        assert manifest_rows(path) == {"a": ("{}", 1), "b": ('{"n":"b"}', 0)}
        assert state.purge() == 0  # the tombstone is kept for a while
        clock.now += DEFAULT_TTL
        assert state.purge() == 1  # b's ttl ended
        assert manifest_rows(path) == {"a": ("{}", 1), "b": ("{}", 1)}
        clock.now += TOMBSTONE_RETENTION
        assert state.purge() == 2  # both tombstones are old enough
        assert manifest_rows(path) == {}


def test_manifest_data_must_be_json(tmp_path: Path) -> None:
    with ZipState(tmp_path / "zip.sqlite3") as state:
        with pytest.raises(TypeError):
            state.save_manifest("m", {"x": object()})
        with pytest.raises(ValueError):
            state.save_manifest("m", {"x": float("nan")})
        assert state.load_manifest("m") is None


# --- delivery coverage --------------------------------------------------------------


def test_one_full_delivery_covers(tmp_path: Path) -> None:
    with ZipState(tmp_path / "zip.sqlite3") as state:
        state.save_manifest("m", {})
        assert state.record_delivered("m", 0, 100, 100) is True
        assert state.delivered("m") == [(0, 100)]


def test_segments_cover_together(tmp_path: Path) -> None:
    with ZipState(tmp_path / "zip.sqlite3") as state:
        state.save_manifest("m", {})
        assert state.record_delivered("m", 50, 75, 100) is False
        assert state.record_delivered("m", 0, 25, 100) is False
        assert state.record_delivered("m", 90, 100, 100) is False
        assert state.delivered("m") == [(0, 25), (50, 75), (90, 100)]
        assert state.record_delivered("m", 20, 60, 100) is False
        assert state.delivered("m") == [(0, 75), (90, 100)]
        assert state.record_delivered("m", 80, 80, 100) is False  # empty: nothing changes
        assert state.record_delivered("m", 75, 90, 100) is True  # touching intervals join
        assert state.delivered("m") == [(0, 100)]
        assert state.record_delivered("m", 10, 20, 100) is True  # stays covered


def test_coverage_is_per_manifest(tmp_path: Path) -> None:
    with ZipState(tmp_path / "zip.sqlite3") as state:
        state.save_manifest("a", {})
        state.save_manifest("b", {})
        assert state.record_delivered("a", 0, 10, 10) is True
        assert state.delivered("b") == []
        assert state.record_delivered("b", 0, 9, 10) is False


def test_empty_zip_is_covered_at_once(tmp_path: Path) -> None:
    with ZipState(tmp_path / "zip.sqlite3") as state:
        state.save_manifest("m", {})
        assert state.record_delivered("m", 0, 0, 0) is True


def test_unknown_manifest_records_nothing(tmp_path: Path) -> None:
    with ZipState(tmp_path / "zip.sqlite3") as state:
        assert state.record_delivered("nope", 0, 10, 10) is False
        assert state.delivered("nope") == []


@pytest.mark.parametrize(("start", "stop", "total"), [(-1, 5, 10), (6, 5, 10), (0, 11, 10)])
def test_bad_delivered_range_is_refused(tmp_path: Path, start: int, stop: int, total: int) -> None:
    with ZipState(tmp_path / "zip.sqlite3") as state:
        state.save_manifest("m", {})
        with pytest.raises(ValueError):
            state.record_delivered("m", start, stop, total)
        assert state.delivered("m") == []
        assert state.record_delivered("m", 0, 10, 10) is True  # no transaction left open


def runs(flags: list[bool]) -> list[tuple[int, int]]:
    """Maximal runs of True in ``flags`` as [start, stop) intervals."""
    out: list[tuple[int, int]] = []
    for index, flag in enumerate(flags):
        if not flag:
            continue
        if out and out[-1][1] == index:
            out[-1] = (out[-1][0], index + 1)
        else:
            out.append((index, index + 1))
    return out


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    total = draw(st.integers(0, 40))
    bounds = st.integers(0, total)
    pairs = draw(st.lists(st.tuples(bounds, bounds), max_size=12))
    return total, [(min(a, b), max(a, b)) for a, b in pairs]


@settings(max_examples=150, deadline=None)
@given(case=deliveries())
def test_coverage_agrees_with_a_byte_model(case: tuple[int, list[tuple[int, int]]]) -> None:
    total, intervals = case
    flags = [False] * total
    with ZipState(":memory:") as state:
        manifest_id = str(uuid.uuid4())
        state.save_manifest(manifest_id, {})
        for start, stop in intervals:
            flags[start:stop] = [True] * (stop - start)
            got = state.record_delivered(manifest_id, start, stop, total)
            assert got is all(flags)
            assert state.delivered(manifest_id) == runs(flags)


@settings(max_examples=150, deadline=None)
@given(case=deliveries())
def test_merge_interval_keeps_sorted_disjoint_runs(
    case: tuple[int, list[tuple[int, int]]],
) -> None:
    total, intervals = case
    flags = [False] * total
    merged: list[tuple[int, int]] = []
    for start, stop in intervals:
        flags[start:stop] = [True] * (stop - start)
        merged = merge_interval(merged, start, stop)
        assert merged == runs(flags)
        assert covers(merged, total) is all(flags)


# --- CRC-32 cache -------------------------------------------------------------------


def test_crc_round_trip_and_key(tmp_path: Path) -> None:
    with ZipState(tmp_path / "zip.sqlite3") as state:
        uri = "https://a.example/f?x=1"
        assert state.get_crc(uri, 10, '"e1"') is None
        state.put_crc(uri, 10, '"e1"', 0)
        state.put_crc(uri, 11, '"e1"', 1)
        state.put_crc(uri, 10, "Mon, 01 Jan 2024 00:00:00 GMT", 0xFFFFFFFF)
        assert state.get_crc(uri, 10, '"e1"') == 0
        assert state.get_crc(uri, 11, '"e1"') == 1
        assert state.get_crc(uri, 10, "Mon, 01 Jan 2024 00:00:00 GMT") == 0xFFFFFFFF
        assert state.get_crc(uri, 10, '"e2"') is None
        assert state.get_crc(uri + "&y", 10, '"e1"') is None
        state.put_crc(uri, 10, '"e1"', 42)  # a new value replaces the old one
        assert state.get_crc(uri, 10, '"e1"') == 42


def test_empty_validator_is_never_cached(tmp_path: Path) -> None:
    path = tmp_path / "zip.sqlite3"
    with ZipState(path) as state:
        state.put_crc("https://a.example/f", 10, "", 1234)
        assert state.get_crc("https://a.example/f", 10, "") is None
        assert count_rows(state.crc_path, "crcs") == 0


@pytest.mark.parametrize("crc", [-1, 1 << 32])
def test_crc_out_of_range_is_refused(tmp_path: Path, crc: int) -> None:
    with ZipState(tmp_path / "zip.sqlite3") as state, pytest.raises(ValueError):
        state.put_crc("https://a.example/f", 10, '"e"', crc)


def test_crc_cache_trims_the_oldest(tmp_path: Path) -> None:
    path = tmp_path / "zip.sqlite3"
    with ZipState(path, crc_limit=3) as state:
        for index in range(5):
            state.put_crc(f"u{index}", 1, "v", index)
        assert count_rows(state.crc_path, "crcs") == 3
        assert [state.get_crc(f"u{i}", 1, "v") for i in range(5)] == [None, None, 2, 3, 4]
        state.put_crc("u2", 1, "v", 2)  # stored again: now the newest
        state.put_crc("u5", 1, "v", 5)
        assert [state.get_crc(f"u{i}", 1, "v") for i in range(6)] == [None, None, 2, None, 4, 5]
        assert count_rows(state.crc_path, "crcs") == 3


def test_a_batch_of_crcs_is_stored_in_its_order(tmp_path: Path) -> None:
    with ZipState(tmp_path / "zip.sqlite3", crc_limit=4) as state:
        rows = [
            ("https://a.example/é ü/✓?q=\"'", 1 << 50, '"e1"', 0xFFFFFFFF),
            ("u1", 0, "Mon, 01 Jan 2024 00:00:00 GMT", 0),
            ("u2", 2, "v", 2),
            ("u1", 0, "Mon, 01 Jan 2024 00:00:00 GMT", 7),  # the later one wins
            ("u3", 3, "", 3),  # no validator: not cached
            ("u4", 4, "v", 4),
            ("u5", 5, "v", 5),
        ]
        state.put_crcs(rows)
        got = [state.get_crc(uri, size, validator) for uri, size, validator, _ in rows]
        # kept: the 4 last inserted (u1 again, u2, u4, u5); the first row is trimmed
        assert got == [None, 7, 2, 7, None, 4, 5]
        assert count_rows(state.crc_path, "crcs") == 4
        state.put_crcs([rows[0]])
        assert state.get_crc(*rows[0][:3]) == 0xFFFFFFFF
        state.put_crcs([])
        with pytest.raises(ValueError):
            state.put_crcs([("u6", 6, "v", 6), ("u7", 7, "v", 1 << 32)])
        assert state.get_crc("u6", 6, "v") is None  # nothing of a refused batch is stored


def test_crc_cache_persists(tmp_path: Path) -> None:
    path = tmp_path / "zip.sqlite3"
    with ZipState(path) as state:
        state.put_crc("u", 5, "v", 77)
    with ZipState(path) as state:
        assert state.get_crc("u", 5, "v") == 77


def test_crcs_read_in_batches_match_one_by_one(tmp_path: Path) -> None:
    state = ZipState(tmp_path / "zip.sqlite3")
    try:
        for n in range(0, 1200, 2):  # every other URI is cached
            state.put_crc(f"https://a.example/{n}", n, f'"e{n}"', n * 7)
        keys = [(f"https://a.example/{n}", n, f'"e{n}"') for n in range(1200)]
        keys += [
            ("https://a.example/4", 5, '"e4"'),  # another size
            ("https://a.example/4", 4, '"other"'),  # another validator
            ("https://a.example/4", 4, ""),  # no validator: never cached
            ("https://a.example/4", 4, '"e4"'),  # twice in one zip
        ]
        batch = state.get_crcs(keys)
        assert batch == [state.get_crc(*key) for key in keys]
        assert batch[:4] == [0, None, 14, None] and batch[-4:] == [None, None, None, 28]
    finally:
        state.close()

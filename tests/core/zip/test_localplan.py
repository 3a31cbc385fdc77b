"""A directory zip's plan, and the cache that reuses it only for an equal listing."""

from __future__ import annotations

import os
from pathlib import Path

from slipstream.zip.listing import list_entries
from slipstream.zip.localplan import ListingCache, Plan, listing_etag, plan_directory


def tree(root: Path, files: int = 5) -> str:
    for n in range(files):
        path = root / f"d{n % 2}" / f"f{n}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * n)
    return str(root)


def test_a_plan_follows_from_the_listing(tmp_path: Path) -> None:
    plan = plan_directory(tree(tmp_path), (), None)
    assert plan.entries == list_entries(str(tmp_path))
    assert len(plan.layout) == 5
    assert plan.etag == listing_etag(plan.entries)
    assert plan.newest == max(int(os.lstat(e.path).st_mtime) for e in plan.entries)
    assert plan_directory(str(tmp_path / "d0"), (), None).newest > 0
    (tmp_path / "empty").mkdir()
    assert plan_directory(str(tmp_path / "empty"), (), None).newest == 0


def test_an_equal_listing_reuses_the_plan_a_changed_one_does_not(tmp_path: Path) -> None:
    directory = tree(tmp_path)
    first = plan_directory(directory, (), None)
    assert plan_directory(directory, (), first) is first
    path = tmp_path / "d1" / "f1.txt"
    path.write_bytes(b"y")  # same size: the mtime (or at least the listing) differs
    os.utime(path, ns=(0, 1_000_000_000_000_000_007))
    second = plan_directory(directory, (), first)
    assert second is not first
    assert second.etag != first.etag
    (tmp_path / "d0" / "new").write_bytes(b"")
    third = plan_directory(directory, (), second)
    assert third is not second
    assert len(third.entries) == 6
    assert third.etag not in (first.etag, second.etag)


def plan_of(size: int) -> Plan:
    return Plan([None] * size, None, "", 0)  # type: ignore[list-item,arg-type]


def test_the_cache_keeps_the_latest_plans_within_its_budget() -> None:
    cache = ListingCache(max_entries=100)
    key = ("/a", ())
    assert cache.get(key) is None
    a, b, c = plan_of(40), plan_of(40), plan_of(30)
    cache.put(("/a", ()), a)
    cache.put(("/b", ()), b)
    assert cache.get(("/a", ())) is a  # now the most recently used
    cache.put(("/c", ()), c)  # 110 entries: the least recently used goes
    assert cache.get(("/b", ())) is None
    assert cache.get(("/a", ())) is a
    assert cache.get(("/c", ())) is c
    cache.put(("/a", ()), plan_of(20))  # in place of the old one
    assert cache.get(("/a", ())) is not a
    cache.put(("/big", ()), plan_of(51))  # over half the budget: never kept
    assert cache.get(("/big", ())) is None
    assert cache.get(("/c", ())) is c
    cache.put(("/c", ()), plan_of(51))  # a key listed again too large is dropped
    assert cache.get(("/c", ())) is None
    assert cache.get(("/a", ("/a/hidden",))) is None  # the hidden paths are in the key

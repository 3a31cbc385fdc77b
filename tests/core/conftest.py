"""Fixtures of the core tests: ``digest_cache``, a fresh cache in the test's directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slipstream.digests import DigestCache


@pytest.fixture
def digest_cache(tmp_path: Path) -> Iterator[DigestCache]:
    """A :class:`DigestCache` on ``state/digests.sqlite3`` under ``tmp_path``, closed after."""
    with DigestCache(tmp_path / "state" / "digests.sqlite3") as c:
        yield c

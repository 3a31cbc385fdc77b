"""``slipstream.server.ws_limits``: the websocket rate limiter alone (sans-IO, time passed
in)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from slipstream.server.ws import rate_limited_reason
from slipstream.server.ws_limits import Blocked, RateLimiter

# --- the rate limiter alone (sans-IO, time passed in) ---------------------------------


def test_limiter_blocks_the_packet_over_the_limit() -> None:
    limiter = RateLimiter(3, window=10, block=5)
    assert [limiter.hit("a", t) for t in (0.0, 1.0, 2.0)] == [None, None, None]
    assert limiter.hit("a", 3.0) == Blocked(5.0, new=True)
    assert limiter.hit("b", 3.0) is None  # other clients are not affected
    assert limiter.hit("a", 4.5) == Blocked(3.5, new=False)
    assert limiter.blocked("a", 7.9) == Blocked(pytest.approx(0.1), new=False)  # type: ignore[arg-type]
    assert limiter.blocked("a", 8.0) is None
    # after the block the count starts afresh
    assert [limiter.hit("a", t) for t in (8.0, 8.1, 8.2)] == [None, None, None]
    assert limiter.hit("a", 8.3) == Blocked(5.0, new=True)


def test_limiter_window_slides() -> None:
    limiter = RateLimiter(3, window=1.0, block=60)
    for t in (0.0, 0.5, 0.9):
        assert limiter.hit("a", t) is None
    assert limiter.hit("a", 1.0) is None  # the hit at 0.0 has left the window
    assert limiter.hit("a", 1.2) is not None  # 0.5, 0.9, 1.0 still inside


def test_limiter_blocked_does_not_count() -> None:
    limiter = RateLimiter(1, window=10, block=5)
    for _ in range(10):
        assert limiter.blocked("a", 0.0) is None
    assert limiter.hit("a", 0.0) is None
    assert limiter.hit("a", 0.0) is not None


def test_limiter_disabled_with_zero() -> None:
    limiter = RateLimiter(0, window=10, block=5)
    assert all(limiter.hit("a", 0.0) is None for _ in range(1000))
    assert len(limiter) == 0


def test_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(5, window=1.0, block=2.0, max_clients=100, sweep_every=50)
    for i in range(1000):
        limiter.hit(f"10.0.{i // 256}.{i % 256}", i * 0.01)
    assert len(limiter) <= 101 + 1
    limiter.hit("x", 0.0)
    limiter.hit("x", 0.0)
    limiter.sweep(1000.0)
    assert len(limiter) == 0


@pytest.mark.parametrize(("left", "shown"), [(0.01, 1), (1.0, 1), (4.01, 5), (5.0, 5)])
def test_blocked_seconds_shown_round_up(left: float, shown: int) -> None:
    assert Blocked(left, new=False).whole_seconds == shown
    assert rate_limited_reason(Blocked(left, new=False)) == f"rate limited, {shown} seconds left"
    assert rate_limited_reason(Blocked(left, new=True)) == "rate limit hit"


def test_limits_module_is_sans_io() -> None:
    """``ws_limits`` imports no I/O library (the package around it does, so check its source)."""
    import slipstream.server.ws_limits as module

    tree = ast.parse(Path(module.__file__ or "").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported <= {"__future__", "collections", "dataclasses", "math", "typing"}, imported

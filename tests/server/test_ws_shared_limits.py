"""``slipstream.server.ws_shared_limits``: the websocket rate limit that worker processes
share (one table in shared memory; time passed in)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from slipstream.server.ws_limits import Blocked
from slipstream.server.ws_shared_limits import SharedRateLimiter, create_table


@pytest.fixture
def table() -> Iterator[int]:
    fd = create_table(64)
    yield fd
    os.close(fd)


def test_two_workers_count_one_ip_together(table: int) -> None:
    one = SharedRateLimiter(table, 4, window=10, block=5)
    two = SharedRateLimiter(table, 4, window=10, block=5)
    assert [one.hit("a", 0.0), two.hit("a", 0.1), one.hit("a", 0.2), two.hit("a", 0.3)] == [
        None
    ] * 4
    assert two.hit("a", 0.4) == Blocked(5.0, new=True)
    assert one.hit("b", 0.4) is None  # other clients are not affected
    assert one.blocked("a", 1.4) == Blocked(pytest.approx(4.0), new=False)  # type: ignore[arg-type]
    assert two.hit("a", 2.4) == Blocked(pytest.approx(3.0), new=False)  # type: ignore[arg-type]
    assert one.blocked("a", 5.4) is None
    assert two.hit("a", 5.5) is None


def test_a_forked_worker_counts_in_the_same_table(table: int) -> None:
    limiter = SharedRateLimiter(table, 3, window=10, block=5)
    pid = os.fork()
    if pid == 0:  # the other worker
        status = 0 if all(limiter.hit("10.0.0.1", 1.0) is None for _ in range(3)) else 1
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert limiter.hit("10.0.0.1", 1.5) == Blocked(5.0, new=True)


def test_the_previous_window_counts_by_the_share_still_covered(table: int) -> None:
    limiter = SharedRateLimiter(table, 10, window=10, block=60)
    for _ in range(8):
        assert limiter.hit("a", 0.0) is None  # 8 packets in the window [0, 10)
    # At 15 the sliding window [5, 15) covers half the previous fixed window: 8 * 0.5 = 4.
    assert [limiter.hit("a", 15.0) for _ in range(6)] == [None] * 6
    assert limiter.hit("a", 15.0) == Blocked(60.0, new=True)
    # Two windows later nothing of the burst is left.
    limiter = SharedRateLimiter(table, 10, window=10, block=60)
    assert limiter.hit("c", 0.0) is None
    assert all(limiter.hit("c", 30.0) is None for _ in range(10))


def test_blocked_counts_nothing_and_zero_disables(table: int) -> None:
    limiter = SharedRateLimiter(table, 1, window=10, block=5)
    for _ in range(5):
        assert limiter.blocked("a", 0.0) is None
    assert limiter.hit("a", 0.0) is None
    assert limiter.hit("a", 0.0) == Blocked(5.0, new=True)
    off = SharedRateLimiter(table, 0, window=10, block=5)
    assert all(off.hit("z", 0.0) is None for _ in range(1000))


def test_the_table_is_bounded_and_forgets_the_idlest(table: int) -> None:
    limiter = SharedRateLimiter(table, 2, window=1.0, block=100)
    assert limiter.hit("busy", 0.0) is None
    assert limiter.hit("busy", 0.0) is None
    assert limiter.hit("busy", 0.0) == Blocked(100.0, new=True)
    for n in range(1000):  # far more IPs than the 64 records
        limiter.hit(f"10.0.{n // 256}.{n % 256}", 0.5 + n * 0.001)
    assert os.fstat(table).st_size == 64 * 32
    # A blocked IP whose block is running is never the one forgotten for a newcomer.
    assert limiter.blocked("busy", 50.0) == Blocked(pytest.approx(50.0), new=False)  # type: ignore[arg-type]

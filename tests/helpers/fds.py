"""File descriptors of this process, counted (a leak shows as a count that does not come back)."""

from __future__ import annotations

import os

import trio


def open_fd_count() -> int:
    """Open file descriptors of this process (the server runs in it too)."""
    return len(os.listdir("/proc/self/fd"))


async def settle_fds(target: int, *, timeout: float = 5.0) -> int:
    """Poll until the fd count is at most ``target`` (or ``timeout``); return the last count."""
    deadline = trio.current_time() + timeout
    count = open_fd_count()
    while count > target and trio.current_time() < deadline:
        await trio.sleep(0.05)
        count = open_fd_count()
    return count

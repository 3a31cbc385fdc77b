"""Plain helpers of the digest tests: files to hash, their keys, a hasher that counts."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import trio

from slipstream.digests import Digests, FileKey, hash_fd


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def open_key(path: Path) -> tuple[int, FileKey]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return fd, FileKey.from_stat(os.fstat(fd))


def open_fds() -> set[str]:
    """Descriptor numbers open now.  Compared as sets: other tests' garbage may be
    collected (closing its descriptors) at any time, so counts alone would be flaky."""
    listed = os.listdir("/proc/self/fd")  # includes the fd of this very listing
    return {n for n in listed if os.path.lexists(f"/proc/self/fd/{n}")}


class CountingHasher:
    """Wraps ``hash_fd``; counts calls, tracks the peak of concurrent calls, can block."""

    def __init__(
        self, *, block: bool = False, fail: Exception | None = None, delay: float = 0.0
    ) -> None:
        self.delay = delay
        self.calls = 0
        self.running = 0
        self.peak = 0
        self.release = threading.Event()
        self.after: Callable[[], None] | None = None
        if not block:
            self.release.set()
        self.fail = fail
        self._lock = threading.Lock()

    async def wait_calls(self, n: int) -> None:
        """Wait until ``n`` calls have started in their worker threads."""
        with trio.fail_after(5):
            while self.calls < n:
                await trio.sleep(0.001)

    def __call__(self, fd: int, size: int) -> Digests:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            assert self.release.wait(10), "test never released the hasher"
            time.sleep(self.delay)
            if self.fail is not None:
                raise self.fail
            result = hash_fd(fd, size)
            if self.after is not None:
                self.after()
            return result
        finally:
            with self._lock:
                self.running -= 1

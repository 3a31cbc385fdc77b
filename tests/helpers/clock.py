"""A clock a test moves by hand, for code that takes its clock as a parameter.

``FakeClock()`` starts at the current unix time (so timestamps derived from it look
real) and stands still until :meth:`FakeClock.advance` moves it: a test expires a URL or
ends a rate-limit block at once instead of sleeping until it happens.
"""

from __future__ import annotations

import time


class FakeClock:
    """A callable returning seconds, like ``time.time`` or ``trio.current_time``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self.now += seconds

"""Background tasks that log and contain their own failure.

A task started in a nursery that lives as long as the server (download jobs, CRC
workers, cache warming) must never take that nursery down: an exception escaping it
cancels every other task there, which stops the server.  :func:`spawn` starts a task
wrapped in :func:`contained`, which logs any ``Exception`` (with the task's name and the
traceback) and returns.  Cancellation (``trio.Cancelled``) and ``KeyboardInterrupt`` are
``BaseException`` and pass through, so shutdown still works.

A task should still handle the failures it expects (and record them where its callers
look); this is the net under it, for the ones nobody expected.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVarTuple

import trio

__all__ = ["contained", "spawn"]

log = logging.getLogger("slipstream.background")

Ts = TypeVarTuple("Ts")


async def contained(
    name: str,
    fn: Callable[[*Ts], Awaitable[object]],
    *args: *Ts,
    logger: logging.Logger = log,
) -> None:
    """``await fn(*args)``; an ``Exception`` it raises is logged as ``name`` and dropped."""
    try:
        await fn(*args)
    except* Exception as group:
        for failure in group.exceptions:
            logger.error("background task %s failed: %r", name, failure, exc_info=failure)


def spawn(
    nursery: trio.Nursery,
    name: str,
    fn: Callable[[*Ts], Awaitable[object]],
    *args: *Ts,
    logger: logging.Logger = log,
) -> None:
    """Start ``fn(*args)`` in ``nursery`` under :func:`contained` (task name ``name``)."""

    async def run() -> None:
        await contained(name, fn, *args, logger=logger)

    nursery.start_soon(run, name=name)

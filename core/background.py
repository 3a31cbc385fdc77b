"""Background tasks that log and contain their own failure.

A task started in a nursery that lives as long as the server (download jobs, CRC
workers, cache warming) must never take that nursery down: an exception escaping it
cancels every other task there, which stops the server.  :func:`spawn` starts a task
wrapped in :func:`contained`, which logs any ``Exception`` (with the task's name and the
traceback) and returns.  Cancellation (``trio.Cancelled``) and ``KeyboardInterrupt`` are
``BaseException`` and pass through, so shutdown still works.

A service that must be ready before anything uses it (it calls
``task_status.started()``) is started with :func:`start`: a failure before it is ready
is the caller's (the server cannot start), one after it is logged and contained the
same way.

A task should still handle the failures it expects (and record them where its callers
look); this is the net under it, for the ones nobody expected.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVarTuple

import trio

__all__ = ["contained", "spawn", "start"]

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


class _Readiness(trio.TaskStatus[None]):
    """Passes ``started()`` on and remembers that it was called."""

    def __init__(self, inner: trio.TaskStatus[None]) -> None:
        self._inner = inner
        self.ready = False

    def started(self, value: None = None) -> None:
        self._inner.started()
        self.ready = True


async def start(
    nursery: trio.Nursery,
    name: str,
    fn: Callable[..., Awaitable[object]],
    *,
    logger: logging.Logger = log,
) -> None:
    """``await nursery.start(fn)`` (``fn`` takes ``task_status``), contained once ready.

    An ``Exception`` before ``fn`` calls ``task_status.started()`` is raised here; one
    after is logged as ``name`` and dropped, so the nursery and its other tasks live on.
    """

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        readiness = _Readiness(task_status)
        try:
            await fn(task_status=readiness)
        except Exception as failure:
            if not readiness.ready:
                raise
            logger.error("background task %s failed: %r", name, failure, exc_info=failure)

    await nursery.start(run, name=name)

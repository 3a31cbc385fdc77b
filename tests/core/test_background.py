"""Background tasks log and contain their own failures (:mod:`slipstream.background`)."""

from __future__ import annotations

import pytest
import trio

from slipstream.background import spawn, start


async def test_a_failing_task_is_logged_and_its_nursery_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finished = trio.Event()

    async def fails() -> None:
        await trio.sleep(0)
        raise RuntimeError("boom")

    async def fails_in_a_nursery() -> None:
        async with trio.open_nursery() as inner:
            inner.start_soon(fails)

    async def survives() -> None:
        await trio.sleep(0.05)
        finished.set()

    async with trio.open_nursery() as nursery:
        spawn(nursery, "the failing one", fails)
        spawn(nursery, "the nested one", fails_in_a_nursery)
        spawn(nursery, "the good one", survives)
    assert finished.is_set()
    assert "background task the failing one failed" in caplog.text
    assert "background task the nested one failed" in caplog.text
    assert caplog.text.count("RuntimeError: boom") >= 2  # the tracebacks are logged


async def test_cancellation_still_stops_a_contained_task() -> None:
    started = trio.Event()

    async def forever() -> None:
        started.set()
        await trio.sleep_forever()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            spawn(nursery, "forever", forever)
            await started.wait()
            nursery.cancel_scope.cancel()


async def test_a_service_failing_after_it_is_ready_is_logged_and_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finished = trio.Event()

    async def service(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(0)
        raise RuntimeError("sweeper broke")

    async def survives() -> None:
        await trio.sleep(0.05)
        finished.set()

    async with trio.open_nursery() as nursery:
        await start(nursery, "the sweeper", service)
        spawn(nursery, "the good one", survives)
    assert finished.is_set()
    assert "background task the sweeper failed" in caplog.text
    assert "RuntimeError: sweeper broke" in caplog.text


async def test_a_service_failing_before_it_is_ready_raises_to_its_starter() -> None:
    async def service(*, task_status: trio.TaskStatus[None]) -> None:
        raise OSError("cannot open the store")

    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await start(nursery, "the store", service)
    assert info.group_contains(OSError, match="cannot open the store")


async def test_cancellation_still_stops_a_started_service() -> None:
    async def service(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await start(nursery, "forever", service)
            nursery.cancel_scope.cancel()

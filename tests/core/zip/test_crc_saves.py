"""CRCs recorded while a reply streams (slipstream.zip.crc.CrcBook.record with a
background nursery) are stored in batches: one transaction per SAVE_BATCH members, and
the rest when the reply flushes, never one thread hop and transaction per member."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import trio
import trio.testing

from slipstream.fetch import Fetcher
from slipstream.netpolicy import NetworkPolicy, Target
from slipstream.zip.crc import SAVE_BATCH, CrcBook
from slipstream.zip.remote import RemoteObject
from slipstream.zip.state import ZipState


class CountingState(ZipState):
    """A zip store that records the rows of each CRC transaction."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []

    def put_crcs(self, rows: Sequence[tuple[str, int, str, int]]) -> None:
        self.batches.append(len(rows))
        super().put_crcs(rows)


def allow_all(target: Target) -> None:
    """A check_url that admits everything (nothing is fetched here)."""


async def test_crcs_of_a_streaming_reply_are_stored_in_batches(tmp_path: Path) -> None:
    count = SAVE_BATCH + 8
    objects = [RemoteObject(f"http://h/{n}", 10, f'"e{n}"', None, None) for n in range(count)]
    with CountingState(tmp_path / "zip.sqlite3") as state:
        async with Fetcher(NetworkPolicy()) as fetcher, trio.open_nursery() as background:
            book = CrcBook(objects, state, fetcher, (), allow_all)
            for index in range(SAVE_BATCH - 1):
                await book.record(index, index, background)
            await trio.testing.wait_all_tasks_blocked()
            assert not background.child_tasks  # a batch is not full yet: nothing stored
            for index in range(SAVE_BATCH - 1, count):
                await book.record(index, index, background)
            assert len(background.child_tasks) == 1  # a full batch: stored in a task
            book.flush(background)  # the reply ends
        assert sum(state.batches) == count
        assert state.batches[0] >= SAVE_BATCH
        assert len(state.batches) <= 2
        found = state.get_crcs([(obj.uri, obj.size, obj.validator) for obj in objects])
        assert found == list(range(count))

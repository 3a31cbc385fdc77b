"""One job's transfer: how it reads the upstream's header fields, and how its body is
received, written and hashed."""

from __future__ import annotations

import errno
import hashlib
import os
import random
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import trio

from slipstream.fetch import Fetched
from slipstream.jobs.files import PartFile
from slipstream.jobs.store import JobRecord
from slipstream.jobs.transfer import BLOCK_SIZE, JobFailed, Transfer, _int_header


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1234", 1234), ("0", 0), ("²", None), ("١٢", None), ("+5", None), (" 5", None), ("", None)],
)
def test_a_length_is_ascii_digits_or_unknown(value: str, expected: int | None) -> None:
    fetched = Fetched.from_response(
        httpx.Response(200, headers=[(b"content-length", value.encode())]), "http://x/"
    )
    assert _int_header(fetched, "content-length") == expected


def test_an_absent_length_is_unknown() -> None:
    fetched = Fetched.from_response(httpx.Response(200), "http://x/")
    assert _int_header(fetched, "content-length") is None


# --- the body: received into blocks, written and hashed by two stage threads -----------


class Chunks:
    """A body source: ``data`` in chunks of the given sizes (cycled); after ``stall_at``
    bytes it waits forever (to be cancelled)."""

    def __init__(self, data: bytes, sizes: list[int], stall_at: int | None = None) -> None:
        self.data = memoryview(data)
        self.sizes = sizes
        self.sent = 0
        self.calls = 0
        self.stall_at = stall_at

    async def readinto(self, buffer: memoryview, /) -> int:
        if self.stall_at is not None and self.sent >= self.stall_at:
            await trio.sleep_forever()
        size = min(len(buffer), self.sizes[self.calls % len(self.sizes)], len(self.data))
        size = min(size, len(self.data) - self.sent)
        self.calls += 1
        buffer[:size] = self.data[self.sent : self.sent + size]
        self.sent += size
        await trio.lowlevel.checkpoint()
        return size


def transfer_into(tmp_path: Path, *, limit: int | None = None) -> tuple[Transfer, int]:
    """A :class:`Transfer` writing ``tmp_path/.t.part`` (no fetcher: only the body is run)."""
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    record = JobRecord("id", "http://x/f", "", "f", False, "downloading")
    part = PartFile(dir_fd, ".t.part", resume=False)

    async def downloading() -> None:
        pass

    transfer = Transfer(record, part, None, limit, lambda: None, downloading)  # type: ignore[arg-type]
    return transfer, dir_fd


def fetched(source: Chunks) -> Fetched:
    return Fetched(200, httpx.Headers(), "http://x/f", source)


@pytest.mark.parametrize("size", [0, 1, BLOCK_SIZE, 5 * BLOCK_SIZE + 12_345])
async def test_the_body_is_written_and_hashed_whole(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    transfer, dir_fd = transfer_into(tmp_path)
    try:
        with trio.fail_after(30):
            await transfer._stream_body(fetched(Chunks(data, [1, 65_536, 999_999, 7])))
        transfer.part.close()
    finally:
        os.close(dir_fd)
    assert (tmp_path / ".t.part").read_bytes() == data
    assert transfer.record.current_size == size
    assert transfer.digest.digest()["sha256"] == hashlib.sha256(data).digest()


@pytest.mark.parametrize("stage", ["write", "hash"])
async def test_a_failing_stage_fails_the_body_without_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    data = random.Random(3).randbytes(6 * BLOCK_SIZE)
    transfer, dir_fd = transfer_into(tmp_path)
    calls = 0

    def failing(view: memoryview) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    if stage == "write":
        monkeypatch.setattr(transfer.part, "write", failing)
    else:
        monkeypatch.setattr(transfer, "digest", SimpleNamespace(update=failing))
    try:
        with trio.fail_after(30), pytest.raises(OSError) as raised:
            await transfer._stream_body(fetched(Chunks(data, [BLOCK_SIZE])))
        transfer.part.close()
    finally:
        os.close(dir_fd)
    assert raised.value.errno == errno.ENOSPC  # the error itself, not a group


async def test_over_the_limit_and_cancelled_bodies_end_at_once(tmp_path: Path) -> None:
    data = random.Random(4).randbytes(3 * BLOCK_SIZE)
    transfer, dir_fd = transfer_into(tmp_path, limit=BLOCK_SIZE + 1)
    try:
        with trio.fail_after(30), pytest.raises(JobFailed) as raised:
            await transfer._stream_body(fetched(Chunks(data, [65_536])))
        assert raised.value.key == "FILE_TOO_LARGE"
        transfer.part.close()
    finally:
        os.close(dir_fd)
    transfer, dir_fd = transfer_into(tmp_path)
    try:
        with trio.fail_after(30):
            with trio.move_on_after(0.5) as scope:
                source = Chunks(data, [65_536], stall_at=2 * BLOCK_SIZE)
                await transfer._stream_body(fetched(source))
        assert scope.cancelled_caught  # the stage threads ended: the body returned
        transfer.part.close()
    finally:
        os.close(dir_fd)
    assert (tmp_path / ".t.part").read_bytes() == data[: 2 * BLOCK_SIZE]

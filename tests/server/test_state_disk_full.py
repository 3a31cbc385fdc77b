"""The state dir fills up while the server runs, then gets room again.

The state dir is a tiny tmpfs mounted for the test (the suite runs as root here); where
mounting is not allowed, every SQLite store write is made to fail with SQLite's own
"database or disk is full" instead.  While it is full: a request that must record
something gets ``503 STATE_UNAVAILABLE`` in its surface's format, files are still served
with correct integrity headers, a running job finishes and is listed, and the server stays
up.  Once there is room, the same requests work and the job's row is written, with no
restart.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from slipstream.sqlitefile import SQLiteFile
from tests.helpers.remote_downloads import MakeEnv
from tests.helpers.upstream import Blob, Upstream
from tests.helpers.zip import form_fields, post


class Disk:
    """Fills the state dir's filesystem and frees it again."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = path
        self.mounted = _mount_tmpfs(path)
        self.full = False
        if not self.mounted:  # the injected failing writer
            original = SQLiteFile.locked

            @contextlib.contextmanager
            def locked(db: SQLiteFile) -> Iterator[Any]:
                with original(db) as writer:
                    yield _FullWriter(writer) if self.full else writer

            monkeypatch.setattr(SQLiteFile, "locked", locked)

    def fill(self) -> None:
        self.full = True
        if not self.mounted:
            return
        block = b"\0" * 65536
        with (self.path / "filler").open("wb", buffering=0) as filler:
            while True:
                try:
                    filler.write(block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    if len(block) == 1:
                        return
                    block = block[: len(block) // 2]

    def free(self) -> None:
        self.full = False
        if self.mounted:
            (self.path / "filler").unlink()

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)


class _FullWriter:
    """A writer connection on a full disk: reads work, every write fails as SQLite's."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if not sql.lstrip().upper().startswith(("SELECT", "PRAGMA", "BEGIN", "ROLLBACK")):
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _mount_tmpfs(path: Path) -> bool:
    path.mkdir()
    try:
        run = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(path)],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    made = Disk(tmp_path / "state", monkeypatch)
    try:
        yield made
    finally:
        made.unmount()


def b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def test_a_full_state_dir_gives_503_keeps_serving_and_recovers(
    disk: Disk, make_env: MakeEnv, upstream: Upstream
) -> None:
    upstream.add("/slow.bin", Blob(data=os.urandom(256 * 1024), chunk=16384, delay_per_chunk=0.05))
    members = [upstream.add(f"/m{n}.txt", Blob(data=f"member {n}\n".encode())) for n in range(2)]
    env = await make_env(state_dir=disk.path, zip_allow_prefixes=[upstream.url("/")])
    served = env.served
    running = await env.start_ok(env.url("/slow.bin"))

    disk.fill()
    refused = await env.start(env.url("/m0.txt"))
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "STATE_UNAVAILABLE"
    zip_post = await post(served, fields=form_fields(members, response_format="json"))
    assert zip_post.status_code == 503, zip_post.text
    assert zip_post.json()["fs_error_key"] == "STATE_UNAVAILABLE"
    data = served.files["medium.bin"]
    async with served.client() as client:
        with trio.fail_after(10):
            while True:  # the digests may be computed in the background first
                reply = await client.get(
                    "/api/download", params={"filepath": "medium.bin"}, headers=served.auth
                )
                assert reply.status_code == 200 and reply.content == data
                if "repr-digest" in reply.headers:
                    break
                await trio.sleep(0.05)
    assert reply.headers["repr-digest"] == f"sha-256=:{b64sha(data)}:"
    finished = await env.wait(running)  # its final row waits in memory, listed all the same
    assert finished["status"] == "completed", finished
    assert _stored_status(disk.path, running) != "completed"
    assert (await env.http.get("/healthz")).status_code == 200

    disk.free()
    with trio.fail_after(15):  # the jobs retry their writes every few seconds
        while _stored_status(disk.path, running) != "completed":
            await trio.sleep(0.1)
    later = await env.fetch(env.url("/m0.txt"))
    assert later["status"] == "completed", later
    created = await post(served, fields=form_fields(members))
    assert created.status_code == 303, created.text


def _stored_status(state: Path, job_id: str) -> str | None:
    """The status in the job's row on disk (read by another connection)."""
    db = sqlite3.connect(f"file:{state / 'downloads.sqlite3'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else str(row[0])
    finally:
        db.close()

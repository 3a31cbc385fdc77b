"""The state dir is 0700 and every file in it 0600: fresh, and when it already existed
with looser permissions (a state dir made by hand, by an older version, under umask 022).

The server runs in this process, so the test sets a permissive umask (022) itself: with
a strict one (077) files would come out 0600 by accident and the test could not fail.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
from pathlib import Path

import pytest
import trio

from tests.helpers.server import Served, start_in
from tests.helpers.upstream import Blob, Upstream
from tests.helpers.zip import create, fetch, member_bytes


def make_loose_state_dir(state: Path) -> None:
    """A state dir as an older version or a hand-made setup leaves it: 0755, with 0644 and
    0666 files (a secret, SQLite databases with their -wal/-shm, something unrelated)."""
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    (state / "secret").write_text("an-older-url-secret\n")
    db = sqlite3.connect(state / "digests.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE leftover (x)")
    db.close()
    (state / "zip.sqlite3-wal").write_bytes(b"")
    (state / "zip.sqlite3-shm").write_bytes(b"")
    (state / "notes.txt").write_text("left here by hand\n")
    for path in state.iterdir():
        path.chmod(0o666 if path.name == "notes.txt" else 0o644)


def modes(state: Path) -> dict[str, int]:
    """Permission bits of the state dir ("." ) and of everything under it."""
    found = {".": stat.S_IMODE(state.lstat().st_mode)}
    for folder, dirs, files in os.walk(state):
        for name in [*dirs, *files]:
            path = Path(folder, name)
            found[str(path.relative_to(state))] = stat.S_IMODE(path.lstat().st_mode)
    return found


async def use_every_store(served: Served, upstream: Upstream) -> None:
    """Requests that write to every SQLite store: a download that records digests, a zip
    manifest, a remote-download job (and its history) and the job lists."""
    upstream.add("/member.bin", Blob(member_bytes(1, 5000)))
    upstream.add("/job.bin", Blob(member_bytes(2, 3000)))
    async with served.client(headers=served.auth) as client:
        reply = await client.get("/api/download", params={"filepath": "medium.bin"})
        assert reply.status_code == 200 and "repr-digest" in reply.headers
        stream = await create(served, [upstream.url("/member.bin")])
        assert (await fetch(served, stream)).status_code == 200
        started = await client.get("/dl", params={"download": upstream.url("/job.bin")})
        assert started.status_code == 202, started.text
        jobs = served.server.services.jobs
        assert jobs is not None
        with trio.fail_after(10):
            await jobs.wait(started.json()["download_id"])
        assert (await client.get("/api/v1/downloads")).status_code == 200
        history = await client.get("/", params={"download_history": ""})
        assert history.json()["history"][0]["status"] == "completed"


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing-0755"])
async def test_state_dir_is_0700_and_every_file_in_it_0600(
    existing: bool,
    loose_umask: None,
    tmp_path: Path,
    nursery: trio.Nursery,
    upstream: Upstream,
) -> None:
    state = tmp_path / "state"
    if existing:
        make_loose_state_dir(state)
        assert modes(state)["."] == 0o755
    base = Path(tempfile.mkdtemp(prefix="site", dir=tmp_path))
    served = await start_in(
        nursery,
        base,
        state_dir=state,
        allow_download=True,
        allow_private_networks=True,
        zip_allow_prefixes=[upstream.url("/")],
    )
    await use_every_store(served, upstream)
    found = modes(state)
    for name in ("digests.sqlite3", "downloads.sqlite3", "zip.sqlite3", "secret"):
        assert name in found, sorted(found)
    assert any(name.endswith(("-wal", "-shm")) for name in found), sorted(found)
    wrong = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (0o700 if (state / name).is_dir() else 0o600)
    }
    assert not wrong, f"too open: {wrong}"
    if existing:  # tightened, not replaced
        assert served.server.services.config.secret == "an-older-url-secret"

"""A damaged state dir, as an operator meets it after a crash or a bad disk.

Every store gets the same damages (random bytes over the header, a truncated file, a
zero-length file, a directory where the file belongs, a file from a newer schema).  A
cache is set aside and the server starts and serves files with correct integrity headers;
a record stops the start with one line naming the file and the way out, exit 1, no
traceback.  ``slipstream state check`` and ``state quarantine`` are the way out.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slipstream.jobs.store import JobRecord, JobStore
from slipstream.zip.state import ZipState
from tests.helpers.damage import DAMAGES, random_header
from tests.helpers.subprocess_server import CliServer

STORES = {
    "downloads.sqlite3": "record",
    "zip.sqlite3": "record",
    "zip-crc.sqlite3": "cache",
    "digests.sqlite3": "cache",
    "token": "record",
    "secret": "record",
}
DATA = os.urandom(300_000)


def slipstream(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "slipstream", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def populated(base: Path) -> tuple[Path, Path]:
    """A root with one file and a state dir whose every store holds something."""
    root = base / "root"
    root.mkdir()
    (root / "file.bin").write_bytes(DATA)
    with CliServer(root) as server:  # makes every store, the token and the secret
        reply = server.download("file.bin")
        assert reply.status_code == 200 and "repr-digest" in reply.headers
        assert server.stop() == 0
    state = root / ".slipstream"
    jobs = JobStore(state / "downloads.sqlite3")
    for n in range(300):
        jobs.save(JobRecord(f"job-{n}", f"https://example.com/{n}" * 4, "d", "f", False, "failed"))
    jobs.close()
    with ZipState(state / "zip.sqlite3") as zips:
        for n in range(300):
            zips.save_manifest(f"m-{n}", {"objects": ["x" * 200]})
            zips.put_crc(f"https://example.com/{n}", n + 1, '"v"', n)
    return root, state


CASES = [
    (name, damage)
    for name in STORES
    for damage in DAMAGES
    if not (damage == "newer schema" and not name.endswith(".sqlite3"))
]


@pytest.mark.parametrize(("name", "damage"), CASES)
def test_each_damage_of_each_store(tmp_path: Path, name: str, damage: str) -> None:
    root, state = populated(tmp_path)
    DAMAGES[damage](state / name)
    if STORES[name] == "record":
        run = slipstream("serve", "--root", str(root), "--port", "0")
        assert run.returncode == 1, run
        assert run.stdout == ""
        lines = run.stderr.splitlines()
        assert len(lines) == 1, run.stderr
        assert lines[0].startswith(f"slipstream serve: {state / name} ")
        assert "slipstream state quarantine" in lines[0] and "Traceback" not in run.stderr
        check = slipstream("state", "check", "--root", str(root))
        assert check.returncode == 1 and f"{name}" in check.stdout and "DAMAGED" in check.stdout
        return
    with CliServer(root) as server:
        for _ in range(2):  # the first reply may come before the background hash
            reply = server.download("file.bin")
            assert reply.status_code == 200 and reply.content == DATA
        sha = base64.b64encode(hashlib.sha256(DATA).digest()).decode()
        assert reply.headers["repr-digest"] == f"sha-256=:{sha}:"
        assert server.stop() == 0
        log = server.log
    assert "Traceback" not in log
    warned = [line for line in log.splitlines() if "moved it aside" in line]
    assert len(warned) == 1 and str(state / name) in warned[0], log
    aside = sorted(p.name for p in state.iterdir() if ".corrupt-" in p.name)
    assert len(aside) == 1 and aside[0].startswith(f"{name}.corrupt-"), aside
    assert slipstream("state", "check", "--root", str(root)).returncode == 0


def test_quarantine_is_the_way_out_of_a_damaged_record(tmp_path: Path) -> None:
    root, state = populated(tmp_path)
    random_header(state / "downloads.sqlite3")
    refused = slipstream("state", "quarantine", "zip", "--root", str(root))
    assert refused.returncode == 1 and "not damaged" in refused.stderr  # only with --force
    unknown = slipstream("state", "quarantine", "nonsense", "--root", str(root))
    assert unknown.returncode == 1 and "no store named" in unknown.stderr
    moved = slipstream("state", "quarantine", "downloads", "--state-dir", str(state))
    assert moved.returncode == 0, moved
    assert (state / "downloads.sqlite3").exists() is False
    assert any(p.name.startswith("downloads.sqlite3.corrupt-") for p in state.iterdir())
    check = slipstream("state", "check", "--root", str(root))
    assert check.returncode == 0, check
    assert "missing (made empty at the next start)" in check.stdout
    assert "set aside earlier" in check.stdout
    with CliServer(root) as server:
        assert server.download("file.bin").status_code == 200
        with server.client() as client:
            history = client.get("/", params={"download_history": "", "token": server.token})
        assert history.status_code == 200 and history.json() == {"history": []}
        # The zip manifests were not touched by moving the jobs store aside.
        assert server.stop() == 0
    with ZipState(state / "zip.sqlite3") as zips:
        assert zips.status("m-1") == "live"


def test_an_older_zip_store_is_migrated_and_its_crc_table_moves_out(tmp_path: Path) -> None:
    """A zip.sqlite3 from before schema versions (user_version 0, with its CRC table) is
    migrated in place: manifests kept, the CRC cache dropped (it has its own file now)."""
    root = tmp_path / "root"
    state = root / ".slipstream"
    state.mkdir(parents=True)
    db = sqlite3.connect(state / "zip.sqlite3")
    db.executescript(
        """
        CREATE TABLE manifests (id TEXT PRIMARY KEY, data TEXT NOT NULL, created REAL NOT NULL,
            expired INTEGER NOT NULL DEFAULT 0, delivered TEXT NOT NULL DEFAULT '[]');
        CREATE TABLE crcs (seq INTEGER PRIMARY KEY AUTOINCREMENT, uri TEXT NOT NULL,
            size INTEGER NOT NULL, validator TEXT NOT NULL, crc INTEGER NOT NULL,
            UNIQUE (uri, size, validator));
        """
    )
    db.execute("INSERT INTO manifests (id, data, created) VALUES ('old', '{}', ?)", (time.time(),))
    db.execute("INSERT INTO crcs (uri, size, validator, crc) VALUES ('u', 1, 'v', 7)")
    db.commit()
    db.close()
    with CliServer(root) as server:
        assert server.stop() == 0
    db = sqlite3.connect(state / "zip.sqlite3")
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
        assert db.execute("SELECT id FROM manifests").fetchall() == [("old",)]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert "crcs" not in tables
    finally:
        db.close()
    check = slipstream("state", "check", "--root", str(root))
    assert check.returncode == 0 and "zip.sqlite3        record  ok, schema 1" in check.stdout


def test_the_names_quarantine_takes_are_the_stores() -> None:
    from slipstream.server.cli_state import STORE_NAMES, stores
    from slipstream.statefiles import SECRET_FILES

    named = [schema.name.removesuffix(".sqlite3") for schema in stores()]
    assert list(STORE_NAMES) == [*named, *SECRET_FILES]
    assert sorted(STORES) == sorted([schema.name for schema in stores()] + list(SECRET_FILES))

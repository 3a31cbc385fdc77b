"""A burst of writes to every store of a state dir, until killed (``python -m`` this).

Three threads write as a busy server does: download-job rows (saved, then finished),
zip manifests with their delivered ranges and CRC-32s, and digest-cache rows.  After each
commit the job and manifest threads print ``job ID`` / ``zip ID`` on stdout, so the test
that SIGKILLs this process knows what was committed before the kill.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from slipstream.digests import hash_path
from slipstream.digests.store import DigestStore
from slipstream.digests.values import FileKey
from slipstream.jobs.store import JobRecord, JobStore
from slipstream.zip.state import ZipState

_print_lock = threading.Lock()


def report(line: str) -> None:
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def jobs(state: Path, run: int) -> None:
    store = JobStore(state / "downloads.sqlite3", history_limit=500)
    for n in range(1_000_000):
        record = JobRecord(f"{run}-{n}", f"https://example.com/{n}", "d", f"f{n}", False, "queued")
        store.save(record)
        record.status, record.current_size = "downloading", n
        store.save(record)
        record.status, record.end_time = "completed", run * 10**7 + n  # newest last
        store.finish(record)
        report(f"job {record.id}")


def zips(state: Path, run: int) -> None:
    zip_state = ZipState(state / "zip.sqlite3")
    for n in range(1_000_000):
        ident = f"{run}-{n}"
        zip_state.save_manifest(ident, {"objects": [f"https://example.com/{n}"] * 5})
        for start in range(0, 1000, 100):
            zip_state.record_delivered(ident, start, start + 100, 1000)
        zip_state.put_crc(f"https://example.com/{ident}", 1000, '"v"', n & 0xFFFFFFFF)
        report(f"zip {ident}")


def digests(state: Path, run: int) -> None:
    sample = state.parent / "sample.bin"  # the state dir is ROOT/.slipstream
    values = hash_path(sample)
    store = DigestStore(state / "digests.sqlite3", lru_size=0, max_rows=2000)
    for n in range(1_000_000):
        store.store(FileKey(run, n, values.size, n), values)


def main() -> None:
    state, run = Path(sys.argv[1]), int(sys.argv[2])
    threads = [
        threading.Thread(target=work, args=(state, run), daemon=True)
        for work in (jobs, zips, digests)
    ]
    for thread in threads:
        thread.start()
    report("ready")
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()

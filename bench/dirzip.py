"""Directory zips: how soon ``GET /api/zip?path=DIR`` starts sending, and at what cost.

slipstream runs as a subprocess (``python -m slipstream serve``, as in ``_servers.py``)
over a temporary root, and is driven over HTTP only: ``GET /api/zip?path=DIR`` with the
Bearer token, read by a blocking-socket client in this process (1 MiB ``recv_into``,
``Connection: close``; the clock starts after ``connect``, just before the request is
sent, and the first body byte is timed on its own, apart from the response head).

**Cold** means the server has no CRC for any file of the directory: every case of every
round runs on a fresh server process with a fresh, empty state directory (the digest
cache lives there), warmed up by a zip of a two-file directory.  The first download is
cold; **warm** is the same request again once that whole download has completed.  The
files are read once before the rounds, so they are in the page cache throughout.

(a) ``big``: a directory of 3 files of 700 MB (random bytes, 2.1 GB).  Targets: cold
    first body byte <= 100 ms; whole cold zip <= 1.3 x whole warm zip (medians).  The
    timed downloads drop their bytes (hashing 2 GB in the client would slow it below the
    server); a check round after the timed ones writes one cold and one warm download to
    a file, hashes them, and runs ``zipfile`` ``testzip()`` on each.
(b) ``small``: 20,000 one-byte files in 20 subdirectories.  Targets: cold first byte
    <= 0.5 s, warm first byte <= 0.3 s, whole cold zip <= 1.0 x Python ``zipfile``
    writing the same files (``ZIP_STORED``, same names, to ``/dev/null``) in this
    process, in the same round (the order of the two reverses every round).
(c) ``rss``: 200,000 one-byte files in 200 subdirectories, zipped cold then warm; the
    server's ``VmHWM`` (``/proc/<pid>/status``) after both is the case's peak RSS (a
    fresh process per case, so the high-water mark is this case's alone).  Target:
    < 150 MiB.  The first byte and whole times are reported.

(a) also has a side ``floor``, in the same rounds, on its own fresh server: a cold
download (which leaves the server warm), then a warm download while, at the same moment,
another process computes the CRC-32 of the three files as the server's CRC workers do
(``os.preadv`` into a 1 MiB aligned buffer, ``slipstream.ext.crc``, 16 MiB pieces over 2
threads, joined with ``slipstream.ext.combine``).  The process is started and ready
before the clock and waits for a go line on its stdin.  The floor time runs from the go
line (sent just before the request) until both the download and the CRC pass are done;
the CRC pass is also timed alone, with no download.  Every CRC it computes must equal
``zlib.crc32`` of the file (computed once before the rounds), else the run fails.  The
floor is the lower bound, on this machine, of the design the server follows for a cold
file (zero-copy ``sendfile`` plus a CRC read from the page cache); no pass/fail target.

Every download is checked: status 200, ``Content-Length`` equal to the bytes read, the
end-of-central-directory record at the end.  The downloads of (b) and (c) go to a file
and are SHA-256'd as they arrive; those of the first round are opened with ``zipfile``
(``testzip()`` is None, the member names are the files'), and every download of a case
must have the same SHA-256, cold or warm, in every round.  A failed check fails the run.

Usage: ``python bench/dirzip.py [--quick] [--rounds N] [--cases a,b,c] [--tmpdir DIR]
[--out DIR]``.  ``--quick`` (development): (a) 3 x 64 MiB, (b) as in full, (c) 20,000
files, one round.  A full run (all cases, not ``--quick``) writes
``bench/results/dirzip.json`` and ``dirzip.png``; other runs write nothing unless ``--out
DIR`` is given.  Exit status: 0 when the targets are met, 1 when one is missed or a check
fails, 2 when disk space is missing, 130 on Ctrl-C.  The temporary directory is removed on
every exit except SIGKILL.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import RESULTS, log
from _dirzip_report import TARGETS, print_table, summarize, write
from _servers import TOKEN, Slipstream, machine_info, proc_cpu_seconds, proc_status_kib

MIB = 1024**2
GIB = 1024**3
EOCD = b"PK\x05\x06"  # end of central directory record; the last 22 bytes of a zip
TIMEOUT_S = 1800.0
READ_SIZE = MIB  # the client's recv_into buffer
CASES = ("a", "b", "c")
CASE_DIRS = {"a": "big", "b": "small", "c": "rss"}
# The floor's CRC pass, as the server's CRC workers for a large file (core/zip/localcrc.py):
CRC_PIECE = 16 * MIB  # bytes of a file per CRC computation, joined with combine
CRC_BUFFER = MIB  # each worker's aligned preadv buffer
CRC_WORKERS = 2  # computations at once


@dataclass(frozen=True)
class Sizes:
    """The data sets of one run."""

    big_files: int  # (a) number of files
    big_size: int  # (a) bytes per file
    small_files: int  # (b) one-byte files
    small_dirs: int  # (b) ... spread over this many subdirectories
    rss_files: int  # (c) one-byte files
    rss_dirs: int  # (c) ... spread over this many subdirectories
    rounds: int


FULL = Sizes(3, 700_000_000, 20_000, 20, 200_000, 200, 3)
QUICK = Sizes(3, 64 * MIB, 20_000, 20, 20_000, 20, 1)


# -- HTTP client ---------------------------------------------------------------------------


@dataclass
class Download:
    """One ``GET`` as the client saw it; times in seconds from just before the request."""

    status: int
    content_length: int
    head_s: float  # the response head was complete
    first_body_s: float  # the first body byte arrived
    total_s: float  # the last body byte arrived
    body_bytes: int
    tail: bytes  # the last bytes of the body
    sha256: str = ""  # of the body, when it was written to a file
    path: Path | None = None  # where the body was written, if it was
    server_cpu_s: float = 0.0  # the server's CPU time during the request

    def sample(self) -> dict[str, Any]:
        """What the JSON keeps of it."""
        return {
            "head_s": self.head_s,
            "first_body_s": self.first_body_s,
            "total_s": self.total_s,
            "bytes": self.body_bytes,
            "bytes_per_s": self.body_bytes / self.total_s,
            "sha256": self.sha256,
            "server_cpu_s": self.server_cpu_s,
        }


def get_zip(port: int, directory: str, sink: Path | None = None) -> Download:
    """``GET /api/zip?path=directory`` with the token; the body dropped, or written to
    ``sink`` and hashed as it arrives.  Checks the status, the length and the end record."""
    lines = [
        f"GET /api/zip?path={directory} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Authorization: Bearer {TOKEN}",
        "Connection: close",
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    hasher = hashlib.sha256() if sink else None
    out = open(sink, "wb") if sink else None  # noqa: SIM115 - closed in the finally
    clock = time.perf_counter
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            began = clock()
            sock.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                n = sock.recv_into(view)
                if not n:
                    raise RuntimeError(f"zip of {directory}: connection closed in the head")
                head += view[:n]
            head_s = clock() - began
            head, _, rest = head.partition(b"\r\n\r\n")
            status_line, *fields = head.decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)
            }
            length = int(headers.get("content-length", "-1"))
            if status != 200 or length < 0:
                raise RuntimeError(
                    f"zip of {directory}: status {status}, Content-Length {length}: {rest[:300]!r}"
                )
            got, tail = len(rest), rest[-64:]
            first_body_s = head_s if rest else 0.0
            if out and hasher and rest:
                out.write(rest)
                hasher.update(rest)
            while got < length:
                n = sock.recv_into(view)
                if not n:
                    break
                if not got:
                    first_body_s = clock() - began
                got += n
                chunk = view[:n]
                if out and hasher:
                    out.write(chunk)
                    hasher.update(chunk)
                tail = (tail + view[max(0, n - 64) : n])[-64:]
            total_s = clock() - began
    finally:
        if out:
            out.close()
    if got != length:
        raise RuntimeError(f"zip of {directory}: {got} body bytes, Content-Length {length}")
    if tail[-22:-18] != EOCD:
        raise RuntimeError(f"zip of {directory}: no end-of-central-directory record at the end")
    digest = hasher.hexdigest() if hasher else ""
    return Download(status, length, head_s, first_body_s, total_s, got, tail, digest, sink)


def check_archive(path: Path, names: Sequence[str], what: str) -> float:
    """``testzip()`` finds no bad member and the names are ``names``; the seconds it took."""
    began = time.perf_counter()
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
        listed = archive.namelist()
    if bad is not None:
        raise RuntimeError(f"{what}: member {bad!r} fails its CRC")
    if listed != list(names):
        raise RuntimeError(f"{what}: {len(listed)} members, not the {len(names)} files")
    return time.perf_counter() - began


# -- data ----------------------------------------------------------------------------------


def big_names(sizes: Sizes) -> list[str]:
    return [f"b{i}.bin" for i in range(sizes.big_files)]


def tiny_names(files: int, dirs: int) -> list[str]:
    """``dNNN/fNNNNNN.bin``, in the zip's (sorted path) order."""
    per_dir = -(-files // dirs)
    return [f"d{i // per_dir:03d}/f{i:06d}.bin" for i in range(files)]


def case_names(case: str, sizes: Sizes) -> list[str]:
    """The member names of a case's zip, in order."""
    if case == "a":
        return big_names(sizes)
    if case == "b":
        return tiny_names(sizes.small_files, sizes.small_dirs)
    return tiny_names(sizes.rss_files, sizes.rss_dirs)


def make_tiny(folder: Path, names: Sequence[str]) -> None:
    """One-byte files (byte = index mod 256)."""
    made: set[str] = set()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for i, name in enumerate(names):
        sub = name.partition("/")[0]
        if sub not in made:
            (folder / sub).mkdir(parents=True)
            made.add(sub)
        fd = os.open(folder / name, flags, 0o644)
        try:
            os.write(fd, bytes([i % 256]))
        finally:
            os.close(fd)


def make_files(root: Path, sizes: Sizes, cases: Sequence[str]) -> None:
    """``warmup/``, and each case's directory: ``big/bN.bin`` (random, all different),
    ``small/`` and ``rss/`` (one-byte files)."""
    (root / "warmup").mkdir()
    (root / "warmup" / "one.txt").write_bytes(b"one\n")
    (root / "warmup" / "two.txt").write_bytes(b"two\n")
    if "a" in cases:
        (root / "big").mkdir()
        block = os.urandom(MIB)
        for i, name in enumerate(big_names(sizes)):
            with open(root / "big" / name, "wb") as handle:
                handle.write(i.to_bytes(8, "big"))
                for offset in range(8, sizes.big_size, MIB):
                    handle.write(block[: min(MIB, sizes.big_size - offset)])
    for case in ("b", "c"):
        if case in cases:
            log(f"dirzip: creating {len(case_names(case, sizes)):,} files for ({case})")
            make_tiny(root / CASE_DIRS[case], case_names(case, sizes))


def read_all(folder: Path) -> int:
    """Read every file under ``folder`` once (into the page cache); the bytes read."""
    total = 0
    buffer = bytearray(READ_SIZE)
    for top, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(top, name), "rb", buffering=0) as handle:
                while n := handle.readinto(buffer):
                    total += n
    return total


def zlib_crcs(paths: Sequence[Path]) -> list[int]:
    """``zlib.crc32`` of each file (read in 1 MiB pieces): what the CRC pass must find."""
    values = []
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    for path in paths:
        value = 0
        with open(path, "rb", buffering=0) as handle:
            while n := handle.readinto(buffer):
                value = zlib.crc32(view[:n], value)
        values.append(value)
    return values


def needed_bytes(sizes: Sizes, cases: Sequence[str]) -> int:
    """Disk space: (a)'s files and one download of their zip, the small zips, 1 GiB spare."""
    big = sizes.big_files * sizes.big_size if "a" in cases else 0
    return 2 * big + 256 * (sizes.small_files + sizes.rss_files) + GIB


# -- the anchor ----------------------------------------------------------------------------


def zipfile_anchor(folder: Path, names: Sequence[str]) -> dict[str, Any]:
    """Python ``zipfile`` writing the files (``ZIP_STORED``) to ``/dev/null``: wall time;
    and the first byte's floor, :func:`listing_floor`."""
    paths = [(str(folder / name), name) for name in names]
    began = time.perf_counter()
    with open(os.devnull, "wb") as sink, zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as z:
        for path, arcname in paths:
            z.write(path, arcname)
    return {"total_s": time.perf_counter() - began, "list_floor_s": listing_floor(folder)}


def listing_floor(folder: Path) -> float:
    """Seconds to walk ``folder`` with ``os.scandir`` and ``lstat`` every file: what any
    directory zip must do before its first byte (the ETag and the length depend on every
    file's version and size), with nothing else."""
    began = time.perf_counter()
    pending = [str(folder)]
    while pending:
        with os.scandir(pending.pop()) as scan:
            for entry in scan:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    entry.stat(follow_symlinks=False)
    return time.perf_counter() - began


# -- the floor's CRC pass ------------------------------------------------------------------


def crc_pass(paths: Sequence[str]) -> list[int]:
    """The CRC-32 of each file, computed as the server's CRC workers do for large files.

    The files are cut into :data:`CRC_PIECE` pieces, queued in order; :data:`CRC_WORKERS`
    threads take pieces from the queue, each opening the file and reading the piece with
    ``os.preadv`` into its own :data:`CRC_BUFFER`-byte aligned buffer
    (``slipstream.buffers.aligned_buffer``), ``slipstream.ext.crc`` after every read; a
    file's pieces are joined with ``slipstream.ext.combine``.
    """
    from slipstream.buffers import aligned_buffer
    from slipstream.ext import combine, crc

    sizes = [os.stat(path).st_size for path in paths]
    queue = deque(
        (index, number, offset, min(CRC_PIECE, size - offset))
        for index, size in enumerate(sizes)
        for number, offset in enumerate(range(0, size, CRC_PIECE))
    )
    parts: list[list[int]] = [[0] * len(range(0, size, CRC_PIECE)) for size in sizes]
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with aligned_buffer(CRC_BUFFER) as buffer:
                while not failures:
                    try:
                        index, number, offset, length = queue.popleft()  # atomic
                    except IndexError:
                        return
                    fd = os.open(paths[index], os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        value = done = 0
                        while done < length:
                            want = min(len(buffer), length - done)
                            got = os.preadv(fd, [buffer[:want]], offset + done)
                            if not got:
                                raise RuntimeError(f"{paths[index]} shrank")
                            value = crc("crc32", buffer[:got], value)
                            done += got
                    finally:
                        os.close(fd)
                    parts[index][number] = value
        except BaseException as exc:  # reported by the caller's thread
            failures.append(exc)

    workers = [threading.Thread(target=work) for _ in range(CRC_WORKERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]
    values = []
    for size, pieces in zip(sizes, parts, strict=True):
        total = pieces[0] if pieces else 0
        for number, value in enumerate(pieces[1:], start=1):
            total = combine("crc32", total, value, min(CRC_PIECE, size - number * CRC_PIECE))
        values.append(total)
    return values


def crc_child(paths: Sequence[str]) -> int:
    """``dirzip.py --crc-pass FILE...``: get ready, print ``ready``, wait for ``go`` on
    stdin, run :func:`crc_pass`, print one JSON line (``began`` and ``ended`` on
    ``CLOCK_MONOTONIC``, which every process shares; ``cpu_s``; ``crcs``)."""
    # Imported before the clock (crc_pass imports them again, for free).
    import slipstream.buffers
    import slipstream.ext  # noqa: F401

    for path in paths:
        os.stat(path)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    began, cpu = time.monotonic(), time.process_time()
    values = crc_pass(paths)
    ended = time.monotonic()
    result = {"began": began, "ended": ended, "cpu_s": time.process_time() - cpu}
    print(json.dumps({**result, "crcs": values}), flush=True)
    return 0


class CrcPass:
    """A :func:`crc_child` process, started and ready: :meth:`go`, then :meth:`result`."""

    def __init__(self, paths: Sequence[Path]) -> None:
        command = [sys.executable, __file__, "--crc-pass", *map(str, paths)]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60.0)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.close()
            raise RuntimeError(f"CRC pass: the process did not get ready: {line!r}")

    def go(self) -> None:
        """Let it start."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, expected: Sequence[int]) -> dict[str, Any]:
        """Its JSON line, once it is done; a ``RuntimeError`` if a CRC is not ``expected``."""
        out, _ = self.proc.communicate(timeout=TIMEOUT_S)
        if self.proc.returncode != 0:
            raise RuntimeError(f"CRC pass: exit status {self.proc.returncode}")
        result: dict[str, Any] = json.loads(out)
        if result["crcs"] != list(expected):
            got = [f"{v:08x}" for v in result["crcs"]]
            want = [f"{v:08x}" for v in expected]
            raise RuntimeError(f"CRC pass: CRC-32s {got}, zlib.crc32 says {want}")
        return result

    def close(self) -> None:
        """Kill it if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()

    def __enter__(self) -> CrcPass:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the cases -----------------------------------------------------------------------------


class DirZipServer(Slipstream):
    """slipstream whose state directory is chosen per start (fresh = every digest cold)."""

    def __init__(self) -> None:
        super().__init__()
        self.state = Path()

    def state_dir(self, tmp: Path) -> Path:
        return self.state


@dataclass
class Bench:
    """Everything one run works with."""

    root: Path
    tmp: Path
    sizes: Sizes
    big_crcs: list[int] = field(default_factory=list)  # zlib.crc32 of (a)'s files
    server: DirZipServer = field(default_factory=DirZipServer)
    starts: int = 0

    def fresh(self) -> float:
        """A new server process on a new, empty state directory, warmed up by a zip of
        ``warmup/``; its idle VmRSS in MiB."""
        self.server.stop()
        if self.starts:  # the last server's digests: not needed any more
            shutil.rmtree(self.tmp / f"state-{self.starts}", ignore_errors=True)
        self.starts += 1
        self.server.state = self.tmp / f"state-{self.starts}"
        self.server.start(self.root, self.tmp)
        get_zip(self.server.port, "warmup")
        return (proc_status_kib(self.server.worker_pid(), "VmRSS") or 0) / 1024

    def download(self, case: str, sink: Path | None) -> Download:
        """One zip of the case's directory, with the server's CPU seconds during it."""
        pid = self.server.worker_pid()
        cpu = proc_cpu_seconds(pid)
        reply = get_zip(self.server.port, CASE_DIRS[case], sink)
        reply.server_cpu_s = proc_cpu_seconds(pid) - cpu
        return reply


def cold_warm(bench: Bench, case: str, keep: str, tag: str) -> dict[str, Any]:
    """On a fresh server: the cold zip, then the same request again (warm); both checked.

    ``keep``: ``"drop"`` the bodies; ``"hash"`` them (written under the temp dir and
    SHA-256'd as they arrive, then deleted); or also ``"verify"`` each file with
    :func:`check_archive` before it is deleted.
    """
    idle = bench.fresh()
    sample: dict[str, Any] = {"idle_rss_mib": idle}
    pid = bench.server.worker_pid()
    for temp in ("cold", "warm"):
        if temp == "warm":
            time.sleep(0.2)  # let the server settle (digests it stores after the reply)
        sink = bench.tmp / f"{tag}-{temp}.zip" if keep != "drop" else None
        reply = bench.download(case, sink)
        sample[f"hwm_after_{temp}_mib"] = (proc_status_kib(pid, "VmHWM") or 0) / 1024
        sample[temp] = reply.sample()
        if sink:
            if keep == "verify":
                names = case_names(case, bench.sizes)
                what = f"({case}) {tag} {temp}"
                sample[temp]["testzip_s"] = check_archive(sink, names, what)
            sink.unlink()
    sample["hwm_mib"] = sample["hwm_after_warm_mib"]
    bench.server.stop()
    return sample


def floor(bench: Bench) -> dict[str, Any]:
    """(a)'s floor on a fresh server: a cold download (dropped), then a warm one while a
    :class:`CrcPass` runs at the same moment; then the CRC pass alone (server stopped).

    Times on ``CLOCK_MONOTONIC`` from the go line, sent just before the request:
    ``floor_s`` = until both are done.
    """
    paths = [bench.root / CASE_DIRS["a"] / name for name in big_names(bench.sizes)]
    sample: dict[str, Any] = {"idle_rss_mib": bench.fresh()}
    sample["cold"] = bench.download("a", None).sample()
    time.sleep(0.2)  # as cold_warm: let the server settle
    with CrcPass(paths) as child:
        began = time.monotonic()
        child.go()
        warm = bench.download("a", None)
        warm_end = time.monotonic()
        crc = child.result(bench.big_crcs)
    bench.server.stop()
    with CrcPass(paths) as child:
        child.go()
        alone = child.result(bench.big_crcs)
    sample["warm"] = warm.sample()
    sample["floor_s"] = max(warm_end, crc["ended"]) - began
    sample["warm_end_s"] = warm_end - began
    sample["crc_start_s"] = crc["began"] - began
    sample["crc_end_s"] = crc["ended"] - began
    sample["crc_s"] = crc["ended"] - crc["began"]
    sample["crc_cpu_s"] = crc["cpu_s"]
    sample["crc_alone_s"] = alone["ended"] - alone["began"]
    sample["crc_alone_cpu_s"] = alone["cpu_s"]
    return sample


Side = Callable[[str], dict[str, Any]]  # one measurement, given a tag for its files


def plan(bench: Bench, cases: Sequence[str]) -> dict[str, dict[str, Side]]:
    """Every case's sides, in their order of an even round."""
    sizes = bench.sizes
    small = bench.root / CASE_DIRS["b"]

    def tiny(case: str) -> Side:
        # The first round's zips are verified; every later one must hash the same.
        return lambda tag: cold_warm(bench, case, "verify" if tag.endswith("-r0") else "hash", tag)

    sides: dict[str, dict[str, Side]] = {
        "a": {
            "slipstream": lambda tag: cold_warm(bench, "a", "drop", tag),
            "floor": lambda tag: floor(bench),
        },
        "b": {
            "zipfile": lambda tag: zipfile_anchor(small, case_names("b", sizes)),
            "slipstream": tiny("b"),
        },
        "c": {"slipstream": tiny("c")},
    }
    return {case: sides[case] for case in cases}


def describe(side: str, sample: dict[str, Any]) -> str:
    """A sample as a progress line."""
    if side == "zipfile":
        return f"{sample['total_s']:.2f} s"
    if side == "floor":
        return (
            f"{sample['floor_s']:.2f} s (warm download {sample['warm']['total_s']:.2f} s, CRC "
            f"pass {sample['crc_s']:.2f} s, at once); CRC pass alone {sample['crc_alone_s']:.2f}"
            f" s, CPU {sample['crc_alone_cpu_s']:.2f} s"
        )
    cold, warm = sample["cold"], sample["warm"]
    return (
        f"first byte cold {cold['first_body_s'] * 1e3:.1f} ms, warm "
        f"{warm['first_body_s'] * 1e3:.1f} ms; whole cold {cold['total_s']:.2f} s, warm "
        f"{warm['total_s']:.2f} s; peak RSS {sample['hwm_mib']:.1f} MiB"
    )


def measure(bench: Bench, cases: Sequence[str]) -> dict[str, Any]:
    """Every case for ``rounds`` rounds, the order of its sides alternating; raw samples.

    Then (a)'s check round: a cold and a warm download written to a file and verified.
    """
    sides = plan(bench, cases)
    raw: dict[str, Any] = {case: {side: [] for side in s} for case, s in sides.items()}
    rounds = bench.sizes.rounds
    for rnd in range(rounds):
        for i, (case, case_sides) in enumerate(sides.items()):
            order = list(case_sides.items())
            for side, fn in order if (rnd + i) % 2 == 0 else order[::-1]:
                sample = fn(f"{case}-r{rnd}")
                raw[case][side].append(sample)
                log(f"round {rnd + 1}/{rounds} ({case}) {side:<10} {describe(side, sample)}")
    if "a" in cases:
        log("dirzip: (a) check round: cold and warm zips written to a file and verified")
        check = cold_warm(bench, "a", "verify", "a-check")
        raw["a"]["check"] = check
        log(f"check (a) {describe('slipstream', check)}")
    for case in cases:
        samples = raw[case]["slipstream"]
        hashed = [raw["a"]["check"]] if case == "a" else samples  # (a)'s timed ones: no hash
        hashes = {s[t]["sha256"] for s in hashed for t in ("cold", "warm")}
        floors = raw[case].get("floor", [])
        lengths = {s[t]["bytes"] for s in [*samples, *hashed, *floors] for t in ("cold", "warm")}
        if len(hashes) != 1 or "" in hashes or len(lengths) != 1:
            raise RuntimeError(f"({case}): the zips differ: SHA-256 {hashes}, lengths {lengths}")
    return raw


# -- run -----------------------------------------------------------------------------------


def run(sizes: Sizes, cases: Sequence[str], tmpdir: str | None) -> dict[str, Any]:
    """Make the files, measure, stop the server, clean up."""
    try:
        info = machine_info()
    except OSError:  # machine_info() also asks nginx and wrk for versions; none needed here
        info = {"loadavg_start": os.getloadavg()}
    for tool in ("nginx", "wrk"):
        info.pop(tool, None)
    with tempfile.TemporaryDirectory(prefix="slipstream-dirzip-", dir=tmpdir) as tmpname:
        tmp = Path(tmpname)
        root = tmp / "data"
        root.mkdir()
        began = time.monotonic()
        log("dirzip: writing the files")
        make_files(root, sizes, cases)
        log(f"dirzip: files written in {time.monotonic() - began:.1f} s; reading them once")
        read_all(root)
        bench = Bench(root, tmp, sizes)
        if "a" in cases:
            names = big_names(sizes)
            bench.big_crcs = zlib_crcs([root / CASE_DIRS["a"] / name for name in names])
        try:
            raw = measure(bench, cases)
        finally:
            bench.server.stop()
        log("dirzip: removing the files")
    info["loadavg_end"] = os.getloadavg()
    return {
        "benchmark": "dirzip",
        "method": "GET /api/zip?path=DIR (Bearer) read by a blocking-socket client, 1 MiB "
        "recv_into, times from just before the request is sent (after connect); first byte = "
        "the first body byte. Cold = a fresh server process on a fresh, empty state directory "
        "(no digest cached), warmed up by a zip of a two-file directory; warm = the same "
        "request again after the cold download completed, same process. Files read once "
        "before the rounds (page cache). (a) timed downloads drop the bytes; a check round "
        "writes a cold and a warm download to a file, SHA-256, zipfile testzip and names; "
        "(b) and (c) every download written and hashed, the first round's tested too; every "
        "download of a case has the same SHA-256 and length. (b) anchor: Python zipfile "
        "ZIP_STORED of the same files and names to /dev/null in the benchmark's process (the "
        "file list made beforehand), "
        "wall time. RSS = the server's VmHWM after the cold and the warm download (a fresh "
        "process per case and round), max over rounds. (a) floor, same rounds, own fresh "
        "server: after a cold download, a warm one while another process (started and ready "
        "before, released by a go line on stdin sent just before the request) computes the "
        "CRC-32 of the files as the server's CRC workers do (os.preadv into a 1 MiB aligned "
        "buffer, slipstream.ext.crc, 16 MiB pieces over 2 threads, joined with combine); floor "
        "= from the go line until both are done (CLOCK_MONOTONIC); the CRC pass also timed "
        "alone; its CRCs checked against zlib.crc32",
        "sizes": asdict(sizes),
        "cases": list(cases),
        "targets": TARGETS,
        "machine": info,
        "summary": summarize(raw),
        "samples": raw,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--crc-pass", nargs="+", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument("--cases", default=",".join(CASES), help="a subset of a,b,c")
    parser.add_argument("--tmpdir", default=None, help="where the temporary directory goes")
    parser.add_argument("--out", default=None, help="write dirzip.json and dirzip.png here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        sizes = Sizes(**{**asdict(sizes), "rounds": args.rounds})
    args.sizes = sizes
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or set(cases) - set(CASES):
        parser.error(f"--cases: a comma-separated subset of {','.join(CASES)}")
    args.case_list = [c for c in CASES if c in cases]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 if every target is met, 1 if not, 2 if it cannot run."""
    args = parse_args(argv)
    if args.crc_pass:  # the floor's CRC pass, in its own process
        return crc_child(args.crc_pass)
    sizes: Sizes = args.sizes
    cases: list[str] = args.case_list
    where = Path(args.tmpdir or tempfile.gettempdir())
    need, free = needed_bytes(sizes, cases), shutil.disk_usage(where).free
    if free < need:
        log(f"dirzip: {where} has {free / GIB:.1f} GiB free; this run needs {need / GIB:.1f}")
        return 2
    # SIGTERM (e.g. from run_all.py) unwinds like Ctrl-C, so the server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        data = run(sizes, cases, args.tmpdir)
    except KeyboardInterrupt:
        log("dirzip: interrupted; server stopped")
        return 130
    except (RuntimeError, OSError, zipfile.BadZipFile) as exc:
        log(f"FAIL: dirzip: {exc}")
        return 1
    print_table(data["sizes"], data["summary"])
    if args.out:
        write(Path(args.out), data)
    elif not args.quick and cases == list(CASES):
        write(RESULTS, data)
    else:
        print("partial or quick run: bench/results/ left as it was (--out DIR writes the results)")
    failed = [key for key, ok in data["summary"]["passed"].items() if not ok]
    if failed:
        log(f"FAIL: dirzip: targets missed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Zip-as-a-service: slipstream's ``/stream`` zips against nginx and zipstream-ng, in one run.

nginx on 127.0.0.1 is the upstream: it serves a temporary directory with one big file
(random bytes), many 1 MiB files (random bytes) and many sparse files that add up to
10 GiB.  slipstream runs as a subprocess (``python -m slipstream serve
--zip-allow-prefix http://127.0.0.1:<nginx>/``).  Each zip is made by ``POST
/download`` (a JSON body, so a fresh random ``fs_request_id``) and read with ``GET
/stream/<id>`` by a small blocking-socket HTTP client in this process, which also times
the first byte of the body.  Three cases, the order alternating between rounds:

(a) ``big``: the 200 of a zip of the 1 GiB file, against nginx serving that file
    directly.  Judged on bytes/s, slipstream / nginx; target >= 0.8.
(b) ``many``: the 200 of a zip of 1,000 files of 1 MiB, against zipstream-ng building
    the same zip (STORED, same names, sized) in this process from the same files on
    disk, its bytes thrown away.  The ratio slipstream / zipstream-ng in bytes/s is
    reported only, for the ``GET`` alone and with the ``POST`` (1,000 probes) added.
(c) ``resume``: on a cold 10 GiB, 1,000-member zip, the time to the first body byte of
    ``Range: bytes=<90%>-`` against the same request at offset 0 (``bytes=0-``).  Each
    request gets its own manifest of fresh URIs (the files plus a query string unique
    to the request, which nginx ignores), so the CRC-32 cache, keyed by URI, holds none
    of them; the script checks that in slipstream's SQLite state before the request.
    The offset-0 reply is closed after its first body byte; the resumed one is read to
    the end (it needs every earlier member's CRC for the central directory, computed
    in the background by ranged fetches).  Targets: median first byte at 90% < 50 ms
    and <= 2 x the median at offset 0.  The resumed transfer's total time is reported.
    "90%" is 90% of the members' bytes, a hair below 90% of the zip; the JSON records
    the exact fraction.

Every zip reply is checked: status, ``Content-Length`` equal to the bytes read, and the
end-of-central-directory signature at its end.  A failed check fails the run.

Usage: ``python bench/zip.py [--quick] [--rounds N] [--tmpdir DIR] [--out DIR]``.
``--quick`` (development): a 128 MiB file, 100 x 1 MiB, a 1 GiB cold zip of 1,000
members, one round.  A full run writes ``bench/results/zip.json`` and ``zip.png``; a quick
one writes nothing unless ``--out DIR`` is given.  Exit status: 0 when the targets are
met, 1 when one is missed or a check fails, 2 when nginx or disk space is missing, 130
on Ctrl-C.  The temporary directory (sparse files included) is removed on every exit
except SIGKILL.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from _common import RESULTS, log
from _feature_servers import ZipServer
from _floors import httpx_receive
from _servers import (
    Nginx,
    RssSampler,
    machine_info,
    nginx_binary,
    proc_cpu_seconds,
    proc_status_kib,
)
from _zip_report import (
    BIG_TARGET,
    RESUME_AT,
    TTFB_FACTOR,
    TTFB_LIMIT_S,
    print_table,
    summarize,
    write,
)

MIB = 1024**2
GIB = 1024**3
EOCD = b"PK\x05\x06"  # end of central directory record; the last 22 bytes of a zip
TIMEOUT_S = 1800.0
READ_SIZE = MIB  # the client's recv_into buffer


@dataclass(frozen=True)
class Sizes:
    """The data sets of one run."""

    big: int  # (a) bytes of the one file
    many: int  # (b) number of files
    many_size: int  # (b) bytes per file
    cold_members: int  # (c) number of (sparse) files
    cold_total: int  # (c) their bytes together
    rounds: int


FULL = Sizes(GIB, 1000, MIB, 1000, 10 * GIB, 3)
QUICK = Sizes(128 * MIB, 100, MIB, 1000, GIB, 1)


# -- HTTP client ---------------------------------------------------------------------------


@dataclass
class Reply:
    """One ``GET`` as the client saw it; times in seconds from before ``connect``."""

    status: int
    headers: dict[str, str]
    head_s: float  # the response head was complete
    first_body_s: float | None  # the first body byte arrived
    total_s: float  # the body was complete (or the client stopped reading)
    body_bytes: int
    tail: bytes  # the last bytes of the body read

    def bytes_per_s(self) -> float:
        return self.body_bytes / self.total_s


def http_get(
    port: int, target: str, headers: Sequence[tuple[str, str]] = (), first_byte_only: bool = False
) -> Reply:
    """``GET target`` on 127.0.0.1 with ``Connection: close``; read the body unless told."""
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    clock = time.perf_counter
    began = clock()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            n = sock.recv_into(view)
            if not n:
                raise RuntimeError(f"GET {target}: connection closed in the response head")
            head += view[:n]
        head_s = clock() - began
        head, _, rest = head.partition(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        parsed = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        length = int(parsed.get("content-length", "-1"))
        got, tail = len(rest), rest[-64:]
        first_body_s = head_s if rest else None
        while (length < 0 or got < length) and not (first_byte_only and got):
            n = sock.recv_into(view)
            if not n:
                break
            if first_body_s is None:
                first_body_s = clock() - began
            got += n
            tail = (tail + view[max(0, n - 64) : n])[-64:]
        total_s = clock() - began
    if not first_byte_only and length >= 0 and got != length:
        raise RuntimeError(f"GET {target}: {got} body bytes, Content-Length {length}")
    return Reply(status, parsed, head_s, first_body_s, total_s, got, tail)


def check_zip(reply: Reply, status: int, what: str) -> None:
    """A whole zip reply: the status expected and the end record at the end."""
    if reply.status != status:
        raise RuntimeError(f"{what}: status {reply.status}, expected {status}")
    if reply.tail[-22:-18] != EOCD:
        raise RuntimeError(f"{what}: the body does not end with an end-of-central-directory")


# -- data ----------------------------------------------------------------------------------


def make_files(root: Path, sizes: Sizes) -> None:
    """``big.bin``, ``many/mNNNN.bin`` (random bytes) and ``cold/cNNNN.bin`` (sparse)."""
    block = os.urandom(MIB)
    with open(root / "big.bin", "wb") as handle:
        for offset in range(0, sizes.big, MIB):
            handle.write(block[: min(MIB, sizes.big - offset)])
    for folder in ("many", "cold"):
        (root / folder).mkdir(mode=0o755)
    for i in range(sizes.many):
        # Each file differs: its index, then the random block, repeated as needed.
        data = (i.to_bytes(8, "big") + block) * (sizes.many_size // MIB + 1)
        (root / "many" / f"m{i:04d}.bin").write_bytes(data[: sizes.many_size])
    for i in range(sizes.cold_members):
        with open(root / "cold" / f"c{i:04d}.bin", "wb") as handle:
            handle.truncate(cold_member_size(sizes, i))


def cold_member_size(sizes: Sizes, index: int) -> int:
    """Sizes that add up to ``cold_total`` exactly."""
    share, extra = divmod(sizes.cold_total, sizes.cold_members)
    return share + (1 if index < extra else 0)


def needed_bytes(sizes: Sizes) -> int:
    """Disk space for a run: the real files and 1 GiB to spare (sparse files take none)."""
    return sizes.big + sizes.many * sizes.many_size + GIB


# -- the cases -----------------------------------------------------------------------------


@dataclass
class Bench:
    """Everything one run works with."""

    root: Path
    sizes: Sizes
    nginx: Nginx
    slip: ZipServer

    def upstream(self, path: str) -> str:
        return f"http://127.0.0.1:{self.nginx.port}/{path}"


def timed(slip: ZipServer, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one measurement; add slipstream's CPU seconds during it."""
    pid = slip.worker_pid()
    cpu = proc_cpu_seconds(pid)
    sample = fn()
    sample["slipstream_cpu_s"] = proc_cpu_seconds(pid) - cpu
    return sample


def big_nginx(bench: Bench) -> dict[str, Any]:
    reply = http_get(bench.nginx.port, "/big.bin")
    if reply.status != 200 or reply.body_bytes != bench.sizes.big:
        raise RuntimeError(f"nginx /big.bin: status {reply.status}, {reply.body_bytes} bytes")
    return {"seconds": reply.total_s, "bytes": reply.body_bytes, "bytes_per_s": reply.bytes_per_s()}


def big_slipstream(bench: Bench) -> dict[str, Any]:
    location, create_s = bench.slip.create([bench.upstream("big.bin")])
    reply = http_get(bench.slip.port, location)
    check_zip(reply, 200, "big zip")
    return {
        "create_s": create_s,
        "seconds": reply.total_s,
        "bytes": reply.body_bytes,
        "bytes_per_s": reply.bytes_per_s(),
    }


def many_zipstream(bench: Bench) -> dict[str, Any]:
    from zipstream import ZIP_STORED, ZipStream  # type: ignore[import-untyped]

    began = time.perf_counter()
    zs = ZipStream(compress_type=ZIP_STORED, sized=True)
    for i in range(bench.sizes.many):
        name = f"m{i:04d}.bin"
        zs.add_path(str(bench.root / "many" / name), name)
    declared = len(zs)
    produced = sum(len(chunk) for chunk in zs)
    seconds = time.perf_counter() - began
    if produced != declared:
        raise RuntimeError(f"zipstream-ng: {produced} bytes, declared {declared}")
    return {"seconds": seconds, "bytes": produced, "bytes_per_s": produced / seconds}


def many_slipstream(bench: Bench) -> dict[str, Any]:
    uris = [bench.upstream(f"many/m{i:04d}.bin") for i in range(bench.sizes.many)]
    location, create_s = bench.slip.create(uris)
    reply = http_get(bench.slip.port, location)
    check_zip(reply, 200, "many zip")
    return {
        "create_s": create_s,
        "seconds": reply.total_s,
        "bytes": reply.body_bytes,
        "bytes_per_s": reply.bytes_per_s(),
        "bytes_per_s_with_create": reply.body_bytes / (reply.total_s + create_s),
    }


def resume(bench: Bench, tag: str, fraction: float) -> dict[str, Any]:
    """``Range: bytes=<fraction of the members' bytes>-`` on a fresh, cold manifest."""
    sizes = bench.sizes
    suffix = f"?cold={tag}"
    uris = [bench.upstream(f"cold/c{i:04d}.bin{suffix}") for i in range(sizes.cold_members)]
    location, create_s = bench.slip.create(uris)
    cached = bench.slip.cached_crcs(suffix)
    if cached:
        raise RuntimeError(f"resume {tag}: {cached} CRCs cached before the first request")
    start = int(fraction * sizes.cold_total)
    first_only = fraction == 0
    reply = http_get(bench.slip.port, location, [("Range", f"bytes={start}-")], first_only)
    if reply.first_body_s is None:
        raise RuntimeError(f"resume {tag}: no body byte (status {reply.status})")
    if first_only:
        if reply.status != 206:
            raise RuntimeError(f"resume {tag}: status {reply.status}, expected 206")
    else:
        check_zip(reply, 206, f"resume {tag}")
    total = int(reply.headers.get("content-range", "/0").rsplit("/", 1)[1])
    sample: dict[str, Any] = {
        "start": start,
        "zip_bytes": total,
        "start_fraction": start / total,
        "create_s": create_s,
        "head_s": reply.head_s,
        "first_body_s": reply.first_body_s,
    }
    if not first_only:
        time.sleep(0.2)  # the last CRC rows are written as the reply ends
        sample["total_s"] = reply.total_s
        sample["bytes"] = reply.body_bytes
        sample["bytes_per_s"] = reply.bytes_per_s()
        sample["crcs_cached_after"] = bench.slip.cached_crcs(suffix)
    return sample


def measure(bench: Bench) -> dict[str, Any]:
    """Every case for ``rounds`` rounds, alternating the order; the raw samples."""
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        "big": {"nginx": [], "slipstream": [], "floor_httpx": []},
        "many": {"zipstream_ng": [], "slipstream": []},
        "resume": {"offset0": [], "offset90": []},
    }
    cases: dict[str, dict[str, Callable[[], dict[str, Any]]]] = {
        "big": {
            "nginx": lambda: big_nginx(bench),
            "slipstream": lambda: big_slipstream(bench),
            "floor_httpx": lambda: httpx_receive(bench.upstream("big.bin")),
        },
        "many": {
            "zipstream_ng": lambda: many_zipstream(bench),
            "slipstream": lambda: many_slipstream(bench),
        },
    }
    rounds = bench.sizes.rounds
    for rnd in range(rounds):
        for i, (case, sides) in enumerate(cases.items()):
            order = list(sides.items())
            for side, fn in order if (rnd + i) % 2 == 0 else order[::-1]:
                sample = timed(bench.slip, fn)
                raw[case][side].append(sample)
                log(
                    f"round {rnd + 1}/{rounds} {case:<5} {side:<12} "
                    f"{sample['bytes_per_s'] / 1e6:>8.1f} MB/s in {sample['seconds']:.2f} s"
                )
                time.sleep(0.5)
        kinds = [("offset0", 0.0), ("offset90", RESUME_AT)]
        for kind, fraction in kinds if rnd % 2 == 0 else kinds[::-1]:
            sample = timed(bench.slip, partial(resume, bench, f"r{rnd}-{kind}", fraction))
            raw["resume"][kind].append(sample)
            extra = f", whole in {sample['total_s']:.2f} s" if "total_s" in sample else ""
            log(
                f"round {rnd + 1}/{rounds} resume {kind:<8} first byte "
                f"{sample['first_body_s'] * 1e3:.1f} ms (POST {sample['create_s']:.2f} s){extra}"
            )
            time.sleep(0.5)
    return raw


# -- run -----------------------------------------------------------------------------------


def run(sizes: Sizes, tmpdir: str | None) -> dict[str, Any]:
    """Make the files, start nginx and slipstream, measure, stop them, clean up."""
    try:
        info = machine_info()
    except OSError:  # machine_info() also asks wrk for its version; this script needs no wrk
        info = {"loadavg_start": os.getloadavg()}
    info["zipstream_ng"] = metadata.version("zipstream-ng")
    with tempfile.TemporaryDirectory(prefix="slipstream-zip-", dir=tmpdir) as tmpname:
        tmp = Path(tmpname)
        tmp.chmod(0o755)  # nginx workers run as an unprivileged user when we are root
        root = tmp / "data"
        root.mkdir(mode=0o755)
        log("zip: writing the files")
        make_files(root, sizes)
        nginx = Nginx()
        slip: ZipServer | None = None
        try:
            nginx.start(root, tmp / "nginx")
            slip = ZipServer(f"http://127.0.0.1:{nginx.port}/", TIMEOUT_S)
            slip.start(tmp / "slip-root", tmp)
            bench = Bench(root, sizes, nginx, slip)
            # Warm-up (imports, SQLite, connections), and the page cache for every file.
            http_get(nginx.port, "/big.bin")
            check_zip(
                http_get(slip.port, slip.create([bench.upstream("many/m0000.bin")])[0]),
                200,
                "warm-up zip",
            )
            many_zipstream(bench)
            pid = slip.worker_pid()
            idle = (proc_status_kib(pid, "VmRSS") or 0) / 1024
            with RssSampler([pid]) as sampler:
                raw = measure(bench)
            peak = sampler.max_kib[pid] / 1024
        finally:
            if slip is not None:
                slip.stop()
            nginx.stop()
    info["loadavg_end"] = os.getloadavg()
    return {
        "benchmark": "zip",
        "method": "POST /download (JSON) then GET /stream/<id> read by a blocking-socket client "
        "(times from before connect); upstream nginx on loopback; (b) anchor is zipstream-ng "
        "in-process; (c) every request on a fresh manifest of fresh URIs (cold CRC cache)",
        "sizes": asdict(sizes),
        "targets": {
            "big_ratio": BIG_TARGET,
            "resume_first_byte_s": TTFB_LIMIT_S,
            "resume_factor": TTFB_FACTOR,
        },
        "machine": info,
        "slipstream_rss_mib": {"idle": idle, "peak": peak},
        "summary": summarize(raw),
        "samples": raw,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument("--tmpdir", default=None, help="where the temporary directory goes")
    parser.add_argument("--out", default=None, help="write zip.json and zip.png here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        sizes = Sizes(**{**asdict(sizes), "rounds": args.rounds})
    args.sizes = sizes
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 if every target is met, 1 if not, 2 if it cannot run."""
    args = parse_args(argv)
    sizes: Sizes = args.sizes
    if not nginx_binary():
        log(
            "zip: nginx not found; install with\n    sudo apt-get install nginx-light\n"
            "(or run `make bench`, which does)"
        )
        return 2
    where = Path(args.tmpdir or tempfile.gettempdir())
    need, free = needed_bytes(sizes), shutil.disk_usage(where).free
    if free < need:
        log(f"zip: {where} has {free / GIB:.1f} GiB free; this run needs {need / GIB:.1f}")
        return 2
    # SIGTERM (e.g. from run_all.py) unwinds like Ctrl-C, so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        data = run(sizes, args.tmpdir)
    except KeyboardInterrupt:
        log("zip: interrupted; servers stopped")
        return 130
    except (RuntimeError, OSError) as exc:
        log(f"FAIL: zip: {exc}")
        return 1
    print_table(data["sizes"], data["summary"])
    rss = data["slipstream_rss_mib"]
    print(f"slipstream RSS MiB: idle {rss['idle']:.1f}, peak {rss['peak']:.1f}")
    if args.out:
        write(Path(args.out), data)
    elif not args.quick:
        write(RESULTS, data)
    else:
        print("quick run: bench/results/ left as it was (--out DIR writes the results)")
    failed = [key for key, res in data["summary"].items() if res["passed"] is False]
    if failed:
        log(f"FAIL: below target: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Zip-as-a-service: slipstream's ``/stream`` zips against nginx and zipstream-ng, in one run.

nginx on 127.0.0.1 is the upstream: it serves a temporary directory with one big file
(random bytes), many 1 MiB and 256 KiB files (random bytes) and many sparse files that add
up to 10 GiB.  slipstream runs as a subprocess (``python -m slipstream serve
--zip-allow-prefix http://127.0.0.1:<nginx>/ --zip-allow-prefix
http://127.0.0.1:<delaying proxy>/``), a fresh process for each case of each round, so
that its ``VmHWM`` (``/proc/<pid>/status``) after the case is the peak RSS of that case
alone (after a warm-up zip of one file from each upstream).  Each zip is made by ``POST
/download`` (a JSON body, so a fresh random ``fs_request_id``) and read with ``GET
/stream/<id>`` by a small blocking-socket HTTP client in this process, which also times
the first byte of the body.  A **cold** manifest lists URIs never seen before (the files
plus a query string unique to the request, which nginx ignores), so the CRC-32 cache,
keyed by URI, holds none of them: the script checks that in slipstream's SQLite state
before the ``GET``.  Four cases; in each, the order of the sides reverses every round:

(a) ``big``: the 200 of a zip of the 1 GiB file, against **nginx** ``proxy_pass``: a
    second nginx (one worker, nginx's proxy defaults, so buffering on) in front of the
    upstream.  Two slipstream figures: ``cold`` (a cold manifest) and ``warm`` (a new
    manifest of the plain URI, whose CRC a warm-up zip cached; checked before the
    ``GET``).  Targets in bytes/s: cold >= 0.7 x proxy_pass, warm >= 0.9 x proxy_pass.
    Reported beside them: nginx serving the file itself; the **pump floor**
    (``_pump_server.py``, a subprocess: a Trio loop that connects to the upstream, sends
    the ``GET`` and relays the body by ``recv_into`` of a 1 MiB buffer and ``send_all`` of
    that memoryview to the client's socket), without and with ``slipstream.ext.crc`` on
    every chunk; and the file received through slipstream's fetcher (its body pump) in
    this process and dropped (``_floors.py``).
(b) ``many``: the 200 of a cold zip of 1,000 files of 1 MiB, against zipstream-ng
    building the same zip (STORED, same names, sized, every CRC computed) in this process
    from the same files on disk, its bytes thrown away: that ratio is reported, for the
    ``GET`` alone and with the ``POST`` (1,000 probes) added.  Target: the ``GET``'s
    bytes/s >= 0.7 x (a) cold's of the same run (medians).  Reported beside it: the
    **many-member floor** (``_pump_server.py``'s ``/many/``: the same members on one
    keep-alive upstream connection, requests pipelined a few ahead, each relayed with its
    CRC-32 between a local header and a data descriptor), as a ratio to (a) cold too; and
    the **upstream's own pace**: curl fetching the same 1,000 files from nginx, one after
    the other on one keep-alive connection, bodies dropped (no relay at all); and the
    **design floor** (``_relay_floor_server.py``: the same body made as the proposed
    design for (b) would, the members relayed back to back by one worker thread, each
    body in C without the GIL, while the Trio task keeps the requests 4 ahead); and the
    **thread floor** (``_thread_floor_server.py``: the same, but the worker thread also
    writes the requests and reads the heads, so the event loop does nothing per member).
(c) ``resume``: on a cold 10 GiB, 1,000-member zip, the time to the first body byte of
    ``Range: bytes=<90%>-`` against the same request at offset 0 (``bytes=0-``), each
    on its own cold manifest.  The offset-0 reply is closed after its first body byte;
    the resumed one is read to the end (it needs every earlier member's CRC for the
    central directory, computed in the background by ranged fetches).  Targets: median
    first byte at 90% < 50 ms and <= 2 x the median at offset 0.  The resumed
    transfer's total time is reported.  "90%" is 90% of the members' bytes, a hair below
    90% of the zip; the JSON records the exact fraction.
(d) ``slow``: a cold zip of 200 files of 256 KiB fetched through ``_delay_proxy.py``, a
    Trio TCP proxy in front of the upstream that holds back every response (probes
    included) until 20 ms after its request head arrived.  Target: ``POST`` + ``GET``
    <= 2.0 s; the ``GET`` alone is reported.  Each round also reads one member straight
    from the proxy and fails unless its first body byte took at least the delay.

Peak RSS: target < 150 MiB during (a), (b) and (d); (c)'s is reported.  Every zip reply
is checked: status, ``Content-Length`` equal to the bytes read, and the
end-of-central-directory signature at its end.  A failed check fails the run.

Usage: ``python bench/zip.py [--quick] [--rounds N] [--tmpdir DIR] [--out DIR]``.
``--quick`` (development): a 128 MiB file, 100 x 1 MiB, a 1 GiB cold zip of 1,000
members, (d) at full size, one round.  A full run writes ``bench/results/zip.json`` and
``zip.png``; a quick one writes nothing unless ``--out DIR`` is given.  Exit status: 0
when the targets are met, 1 when one is missed or a check fails, 2 when nginx or disk
space is missing, 130 on Ctrl-C.  The temporary directory (sparse files included) is
removed on every exit except SIGKILL.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
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
    BenchServer,
    Nginx,
    NginxProxy,
    ScriptServer,
    machine_info,
    nginx_binary,
    proc_cpu_seconds,
    proc_status_kib,
)
from _zip_report import RESUME_AT, TARGETS, print_table, summarize, write

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
    slow: int  # (d) number of files
    slow_size: int  # (d) bytes per file
    delay_ms: int  # (d) the upstream's wait before each response's first byte
    rounds: int


FULL = Sizes(GIB, 1000, MIB, 1000, 10 * GIB, 200, 256 * 1024, 20, 3)
QUICK = Sizes(128 * MIB, 100, MIB, 1000, GIB, 200, 256 * 1024, 20, 1)


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
    """``big.bin``, ``many/mNNNN.bin``, ``slow/sNNNN.bin`` (random bytes), ``cold/cNNNN.bin``
    (sparse)."""
    block = os.urandom(MIB)
    with open(root / "big.bin", "wb") as handle:
        for offset in range(0, sizes.big, MIB):
            handle.write(block[: min(MIB, sizes.big - offset)])
    for folder in ("many", "cold", "slow"):
        (root / folder).mkdir(mode=0o755)
    for folder, count, size in (
        ("many", sizes.many, sizes.many_size),
        ("slow", sizes.slow, sizes.slow_size),
    ):
        for i in range(count):
            # Each file differs: its index, then the random block, repeated as needed.
            data = (i.to_bytes(8, "big") + block) * (size // MIB + 1)
            (root / folder / f"{folder[0]}{i:04d}.bin").write_bytes(data[:size])
    for i in range(sizes.cold_members):
        with open(root / "cold" / f"c{i:04d}.bin", "wb") as handle:
            handle.truncate(cold_member_size(sizes, i))


def cold_member_size(sizes: Sizes, index: int) -> int:
    """Sizes that add up to ``cold_total`` exactly."""
    share, extra = divmod(sizes.cold_total, sizes.cold_members)
    return share + (1 if index < extra else 0)


def needed_bytes(sizes: Sizes) -> int:
    """Disk space for a run: the real files, room for nginx ``proxy_pass`` to spool the big
    one, and 1 GiB to spare (sparse files take none)."""
    return 2 * sizes.big + sizes.many * sizes.many_size + sizes.slow * sizes.slow_size + GIB


# -- the cases -----------------------------------------------------------------------------


@dataclass
class Bench:
    """Everything one run works with: the upstream, the anchors, the floor, slipstream."""

    root: Path
    tmp: Path
    sizes: Sizes
    nginx: Nginx
    proxy: NginxProxy
    pump: ScriptServer
    slow: ScriptServer  # the delaying proxy in front of nginx
    slip: ZipServer
    relay_floor: ScriptServer  # (b)'s design floor
    thread_floor: ScriptServer  # (b)'s thread floor (the loop idle per member)

    def upstream(self, path: str) -> str:
        return f"http://127.0.0.1:{self.nginx.port}/{path}"

    def slow_upstream(self, path: str) -> str:
        return f"http://127.0.0.1:{self.slow.port}/{path}"

    def restart(self) -> float:
        """A fresh slipstream process (same state), warmed up; its idle VmRSS in MiB.

        Fresh per case, so that its ``VmHWM`` afterwards is the peak of that case alone.
        The warm-up zips one file from nginx and one through the delaying proxy (imports,
        SQLite, a connection to each upstream); after the first, their CRCs are cached.
        """
        self.slip.stop()
        self.slip.start(self.tmp / "slip-root", self.tmp)
        warm = [self.upstream("many/m0000.bin"), self.slow_upstream("slow/s0000.bin")]
        check_zip(http_get(self.slip.port, self.slip.create(warm)[0]), 200, "warm-up zip")
        return (proc_status_kib(self.slip.worker_pid(), "VmRSS") or 0) / 1024

    def cold_manifest(
        self, paths: Sequence[str], tag: str, slow: bool = False
    ) -> tuple[str, float]:
        """``POST /download`` of fresh URIs (``?cold=<tag>``); check none has a cached CRC."""
        suffix = f"?cold={tag}"
        at = self.slow_upstream if slow else self.upstream
        location, create_s = self.slip.create([at(path + suffix) for path in paths])
        cached = self.slip.cached_crcs(suffix)
        if cached:
            raise RuntimeError(f"{tag}: {cached} CRCs cached before the first request")
        return location, create_s


def timed(slip: ZipServer, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one measurement; add slipstream's CPU seconds during it."""
    pid = slip.worker_pid()
    cpu = proc_cpu_seconds(pid)
    sample = fn()
    sample["slipstream_cpu_s"] = proc_cpu_seconds(pid) - cpu
    return sample


def plain_file(port: int, target: str, size: int, what: str) -> dict[str, Any]:
    """A ``GET`` of one file (nginx, nginx ``proxy_pass``, the pump): 200 and every byte."""
    reply = http_get(port, target)
    if reply.status != 200 or reply.body_bytes != size:
        raise RuntimeError(f"{what} {target}: status {reply.status}, {reply.body_bytes} bytes")
    return {"seconds": reply.total_s, "bytes": reply.body_bytes, "bytes_per_s": reply.bytes_per_s()}


def big_slipstream(bench: Bench, tag: str, warm: bool) -> dict[str, Any]:
    """The zip of ``big.bin``: cold (a URI never seen) or warm (its CRC cached)."""
    if warm:
        uri = bench.upstream("big.bin")
        if not bench.slip.cached_crc(uri):
            raise RuntimeError(f"big zip, warm: no CRC cached for {uri}")
        location, create_s = bench.slip.create([uri])
    else:
        location, create_s = bench.cold_manifest(["big.bin"], tag)
    reply = http_get(bench.slip.port, location)
    check_zip(reply, 200, f"big zip ({'warm' if warm else 'cold'})")
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


def many_floor(bench: Bench, server: ScriptServer | None = None) -> dict[str, Any]:
    """The floor of (b): the pump (or ``server``, the design floor) relays the same
    members as one zip-framed body."""
    sizes = bench.sizes
    server = server or bench.pump
    reply = http_get(server.port, f"/many/{sizes.many}/many/m")
    name_bytes = len("m0000.bin")
    expected = sizes.many * (30 + name_bytes + sizes.many_size + 16)
    if reply.status != 200 or reply.body_bytes != expected:
        raise RuntimeError(f"{server.name} /many/: status {reply.status}, {reply.body_bytes} bytes")
    return {"seconds": reply.total_s, "bytes": reply.body_bytes, "bytes_per_s": reply.bytes_per_s()}


def many_upstream_curl(bench: Bench) -> dict[str, Any]:
    """The upstream's own pace for (b): curl fetching the same members from nginx, one
    after the other on one keep-alive connection, bodies dropped.  No relay at all: what
    the upstream and the loopback give a C client."""
    sizes = bench.sizes
    config = bench.tmp / "many-urls.curl"
    if not config.exists():
        config.write_text(
            "".join(
                f'url = "{bench.upstream(f"many/m{i:04d}.bin")}"\noutput = "/dev/null"\n'
                for i in range(sizes.many)
            )
        )
    began = time.perf_counter()
    subprocess.run(["curl", "-s", "--fail", "-K", str(config)], check=True, timeout=TIMEOUT_S)
    seconds = time.perf_counter() - began
    size = sizes.many * sizes.many_size
    return {"seconds": seconds, "bytes": size, "bytes_per_s": size / seconds}


def many_slipstream(bench: Bench, tag: str) -> dict[str, Any]:
    """The zip of the 1 MiB files, cold (as zipstream-ng, it computes every CRC)."""
    paths = [f"many/m{i:04d}.bin" for i in range(bench.sizes.many)]
    location, create_s = bench.cold_manifest(paths, tag)
    reply = http_get(bench.slip.port, location)
    check_zip(reply, 200, "many zip")
    return {
        "create_s": create_s,
        "seconds": reply.total_s,
        "bytes": reply.body_bytes,
        "bytes_per_s": reply.bytes_per_s(),
        "bytes_per_s_with_create": reply.body_bytes / (reply.total_s + create_s),
    }


def slow_slipstream(bench: Bench, tag: str) -> dict[str, Any]:
    """The cold zip of the 256 KiB files through the delaying proxy: POST and GET timed."""
    paths = [f"slow/s{i:04d}.bin" for i in range(bench.sizes.slow)]
    location, create_s = bench.cold_manifest(paths, tag, slow=True)
    reply = http_get(bench.slip.port, location)
    check_zip(reply, 200, "slow zip")
    whole = create_s + reply.total_s
    return {
        "create_s": create_s,
        "get_s": reply.total_s,
        "seconds": whole,
        "first_body_s": reply.first_body_s,
        "bytes": reply.body_bytes,
        "bytes_per_s": reply.body_bytes / whole,
    }


def slow_check(bench: Bench) -> dict[str, Any]:
    """One member straight from the delaying proxy: it must wait its delay, then send."""
    reply = http_get(bench.slow.port, "/slow/s0001.bin")
    if reply.status != 200 or reply.body_bytes != bench.sizes.slow_size:
        raise RuntimeError(f"delaying proxy: status {reply.status}, {reply.body_bytes} bytes")
    first = reply.first_body_s or 0.0
    if first < bench.sizes.delay_ms / 1000:
        raise RuntimeError(f"delaying proxy: first body byte after {first * 1e3:.1f} ms")
    return {
        "seconds": reply.total_s,
        "first_body_s": first,
        "bytes": reply.body_bytes,
        "bytes_per_s": reply.bytes_per_s(),
    }


def resume(bench: Bench, tag: str, fraction: float) -> dict[str, Any]:
    """``Range: bytes=<fraction of the members' bytes>-`` on a fresh, cold manifest."""
    sizes = bench.sizes
    paths = [f"cold/c{i:04d}.bin" for i in range(sizes.cold_members)]
    location, create_s = bench.cold_manifest(paths, tag)
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
        sample["crcs_cached_after"] = bench.slip.cached_crcs(f"?cold={tag}")
    return sample


Side = Callable[[str], dict[str, Any]]  # one measurement, given its cold-URI tag


def cases(bench: Bench) -> dict[str, dict[str, Side]]:
    """Every case's sides, in their order of an even round."""
    size = bench.sizes.big
    return {
        "big": {
            "nginx": lambda tag: plain_file(bench.nginx.port, "/big.bin", size, "nginx"),
            "proxy_pass": lambda tag: plain_file(bench.proxy.port, "/big.bin", size, "proxy"),
            "pump": lambda tag: plain_file(bench.pump.port, "/plain/big.bin", size, "pump"),
            "pump_crc": lambda tag: plain_file(bench.pump.port, "/crc/big.bin", size, "pump"),
            "floor_httpx": lambda tag: httpx_receive(bench.upstream("big.bin")),
            "cold": lambda tag: big_slipstream(bench, tag, warm=False),
            "warm": lambda tag: big_slipstream(bench, tag, warm=True),
        },
        "many": {
            "zipstream_ng": lambda tag: many_zipstream(bench),
            "pump_crc": lambda tag: many_floor(bench),
            "relay_floor": lambda tag: many_floor(bench, bench.relay_floor),
            "thread_floor": lambda tag: many_floor(bench, bench.thread_floor),
            "upstream_curl": lambda tag: many_upstream_curl(bench),
            "slipstream": lambda tag: many_slipstream(bench, tag),
        },
        "slow": {
            "proxy_check": lambda tag: slow_check(bench),
            "slipstream": lambda tag: slow_slipstream(bench, tag),
        },
        "resume": {
            "offset0": lambda tag: resume(bench, tag, 0.0),
            "offset90": lambda tag: resume(bench, tag, RESUME_AT),
        },
    }


def describe(case: str, sample: dict[str, Any]) -> str:
    """A sample as a progress line."""
    if case == "resume":
        whole = f", whole in {sample['total_s']:.2f} s" if "total_s" in sample else ""
        return (
            f"first byte {sample['first_body_s'] * 1e3:.1f} ms "
            f"(POST {sample['create_s']:.2f} s){whole}"
        )
    if case == "slow":
        if "get_s" in sample:
            return (
                f"{sample['seconds']:.2f} s (POST {sample['create_s']:.2f} s, "
                f"GET {sample['get_s']:.2f} s)"
            )
        return f"one member, first body byte {sample['first_body_s'] * 1e3:.1f} ms"
    return f"{sample['bytes_per_s'] / 1e6:>8.1f} MB/s in {sample['seconds']:.2f} s"


def measure(bench: Bench) -> dict[str, Any]:
    """Every case for ``rounds`` rounds, the order of its sides alternating; raw samples.

    Each case of each round gets a fresh slipstream process, whose ``VmHWM`` after the
    case is that case's peak RSS.
    """
    plan = cases(bench)
    raw: dict[str, Any] = {case: {side: [] for side in sides} for case, sides in plan.items()}
    raw["rss"] = {case: [] for case in plan}
    rounds = bench.sizes.rounds
    for rnd in range(rounds):
        for i, (case, sides) in enumerate(plan.items()):
            idle = bench.restart()
            order = list(sides.items())
            for side, fn in order if (rnd + i) % 2 == 0 else order[::-1]:
                sample = timed(bench.slip, partial(fn, f"{case}-{side}-r{rnd}"))
                raw[case][side].append(sample)
                log(f"round {rnd + 1}/{rounds} {case:<6} {side:<12} {describe(case, sample)}")
                time.sleep(0.5)
            hwm = (proc_status_kib(bench.slip.worker_pid(), "VmHWM") or 0) / 1024
            raw["rss"][case].append({"idle_mib": idle, "hwm_mib": hwm})
            log(f"round {rnd + 1}/{rounds} {case:<6} RSS idle {idle:.1f} MiB, peak {hwm:.1f} MiB")
    return raw


# -- run -----------------------------------------------------------------------------------


def wait_cached(slip: ZipServer, uri: str) -> None:
    """Wait (5 s at most) until the CRC of ``uri`` is in slipstream's cache."""
    deadline = time.monotonic() + 5.0
    while not slip.cached_crc(uri):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no CRC cached for {uri} after a whole zip of it")
        time.sleep(0.05)


def run(sizes: Sizes, tmpdir: str | None) -> dict[str, Any]:
    """Make the files, start the servers, measure, stop them, clean up."""
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
        proxy: NginxProxy | None = None
        servers: list[BenchServer] = [nginx]
        try:
            nginx.start(root, tmp / "nginx")
            proxy = NginxProxy(nginx.port)
            servers.append(proxy)
            proxy.start(root, tmp / "nginx-proxy")
            pump = ScriptServer("_pump_server.py", [str(nginx.port)])
            servers.append(pump)
            pump.start()
            relay_floor = ScriptServer("_relay_floor_server.py", [str(nginx.port)])
            servers.append(relay_floor)
            relay_floor.start()
            thread_floor = ScriptServer("_thread_floor_server.py", [str(nginx.port)])
            servers.append(thread_floor)
            thread_floor.start()
            slow = ScriptServer("_delay_proxy.py", [str(nginx.port), str(sizes.delay_ms)])
            servers.append(slow)
            slow.start()
            prefixes = [f"http://127.0.0.1:{port}/" for port in (nginx.port, slow.port)]
            slip = ZipServer(prefixes, TIMEOUT_S)
            servers.append(slip)
            bench = Bench(
                root, tmp, sizes, nginx, proxy, pump, slow, slip, relay_floor, thread_floor
            )
            bench.restart()
            # Warm-up: the page cache for every file, and the CRC of big.bin for (a) warm.
            for port in (nginx.port, proxy.port):
                plain_file(port, "/big.bin", sizes.big, "warm-up")
            check_zip(
                http_get(slip.port, slip.create([bench.upstream("big.bin")])[0]), 200, "warm-up"
            )
            wait_cached(slip, bench.upstream("big.bin"))
            many_zipstream(bench)
            raw = measure(bench)
        finally:
            for server in reversed(servers):
                server.stop()
    info["loadavg_end"] = os.getloadavg()
    return {
        "benchmark": "zip",
        "method": "POST /download (JSON) then GET /stream/<id> read by a blocking-socket client "
        "(times from before connect); upstream nginx on loopback; (a) anchor nginx proxy_pass "
        "of the same upstream, floors a Trio pump (subprocess) with and without CRC-32; cold "
        "= every request on a manifest of fresh URIs (no CRC cached), warm = the URI's CRC "
        "cached; (b) anchor zipstream-ng in-process, target against (a) cold; (c) cold "
        "manifests; (d) cold, through a proxy delaying every response's first byte; a fresh "
        "slipstream process per case and round, RSS = its VmHWM after the case",
        "sizes": asdict(sizes),
        "targets": TARGETS,
        "machine": info,
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
    if not nginx_binary() or not shutil.which("curl"):
        log(
            "zip: nginx or curl not found; install with\n"
            "    sudo apt-get install nginx-light curl\n(or run `make bench`, which does)"
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
    if args.out:
        write(Path(args.out), data)
    elif not args.quick:
        write(RESULTS, data)
    else:
        print("quick run: bench/results/ left as it was (--out DIR writes the results)")
    failed = [key for key, passed in data["summary"]["verdicts"].items() if not passed]
    if failed:
        log(f"FAIL: below target: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

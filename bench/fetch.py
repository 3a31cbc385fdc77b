"""Remote downloads: a slipstream job against curl and aria2c, side by side in one run.

nginx on 127.0.0.1 serves a 1 GiB file and a 20 MiB file from a temporary directory.
slipstream runs as a subprocess with remote downloads on (``--allow-download
--allow-private-networks``) and its root in the same temporary directory, so its
downloads and the other tools' land on the same filesystem.

Single download of the 1 GiB file, several rounds, the order rotating each round:

- slipstream: ``GET /fetched?download=URL`` until the job's final websocket event
  (type 20 subscription) says ``completed``; by then the file is fsynced, renamed into
  place and its digests computed (the job hashes in-line). Wall time from the request
  to that event.
- ``curl -s -o FILE URL``, and ``aria2c -x1 -s1`` and ``aria2c`` with its defaults.
  Also recorded, for information: how long an ``fsync`` of curl's file takes after curl
  exits (curl does not sync; the job does).

Then 50 concurrent jobs of the 20 MiB file (the server's default of 8 running at once,
the rest queued), total time until the last completes, against 50 concurrent curls.
The slipstream process's RSS is sampled every 50 ms during its runs.

Targets (exit status 1 when one is missed, or when a download fails or comes out
wrong): median single-download bytes/s of slipstream >= 0.8 x curl's; slipstream peak
RSS < 150 MiB. The other ratios are reported only. Ratios are slipstream / other in
bytes/s (for the concurrent case: curl's total time / slipstream's).

Usage: ``python bench/fetch.py [--quick] [--rounds N] [--size-mib N] [--jobs N]
[--job-mib N] [--tmpdir DIR]``. ``--quick`` is a 128 MiB file, 50 x 2 MiB jobs and one
round, for development. Only a full run (default sizes) writes ``bench/results/fetch.json``
and ``fetch.png``. Exit status 2 when nginx, curl or aria2c is missing or the disk is too
full; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import RESULTS, log, write_results
from _feature_servers import JOB_DIR, JobServer, run_jobs
from _fetch_report import SINGLE_TARGET, TOOLS, draw_chart, print_table, summarize
from _floors import durable_write, httpx_receive
from _servers import (
    RSS_LIMIT_MIB,
    Nginx,
    RssSampler,
    machine_info,
    nginx_binary,
    proc_cpu_seconds,
    proc_status_kib,
    tool_version,
)

MIB = 1024**2
BIG = "big.bin"
SMALL = "small.bin"
DEFAULTS = {"size_mib": 1024, "jobs": 50, "job_mib": 20, "rounds": 3}
QUICK = {"size_mib": 128, "jobs": 50, "job_mib": 2, "rounds": 1}


@dataclass
class Bench:
    """Everything one run works with."""

    tmp: Path
    src: Path  # nginx's root: BIG and SMALL
    root: Path  # slipstream's root; its downloads go to root / JOB_DIR
    out: Path  # where curl and aria2c write
    nginx: Nginx
    slip: JobServer
    size: int
    job_size: int
    jobs: int
    sha256: dict[str, str] = field(default_factory=dict)

    def url(self, name: str, query: str = "") -> str:
        return f"http://127.0.0.1:{self.nginx.port}/{name}" + (f"?{query}" if query else "")


# -- files ---------------------------------------------------------------------------------


def make_file(path: Path, size: int) -> str:
    """Write ``size`` bytes (one random MiB repeated); return their SHA-256."""
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        left = size
        while left:
            chunk = block[: min(left, MIB)]
            handle.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def settle(*paths: Path) -> None:
    """Delete downloaded files, flush the page cache's dirty pages, let the disk calm down.

    Runs between measurements so that no run pays for writing back another's bytes.
    """
    for path in paths:
        path.unlink(missing_ok=True)
    os.sync()
    time.sleep(0.5)


def needed_bytes(size: int, job_size: int, jobs: int) -> int:
    """Disk needed at the worst moment: sources, one big copy, one batch, 1 GiB spare."""
    return 2 * size + job_size + jobs * job_size + 1024 * MIB


# -- slipstream jobs -----------------------------------------------------------------------


def check_job(bench: Bench, event: dict[str, Any], size: int, sha256: str) -> Path:
    """The job completed with the right size and SHA-256, and the file is in place."""
    if event["status"] != "completed":
        raise RuntimeError(f"job {event['id']} ended {event['status']}: {event.get('error')}")
    if event["total_bytes"] != size or event["sha256"] != sha256:
        raise RuntimeError(f"job {event['id']} got {event['total_bytes']} bytes {event['sha256']}")
    path: Path = bench.root / JOB_DIR / str(event["filename"])
    if path.stat().st_size != size:
        raise RuntimeError(f"{path} has {path.stat().st_size} bytes, not {size}")
    return path


def slip_single(bench: Bench, name: str) -> dict[str, Any]:
    """One 1 GiB job; its time, with the server's RSS sampled."""
    import trio

    pid = bench.slip.worker_pid()
    cpu_before = proc_cpu_seconds(pid)
    with RssSampler([pid]) as sampler:
        run = trio.run(run_jobs, bench.slip.port, [(bench.url(BIG), name)])
    cpu = proc_cpu_seconds(pid) - cpu_before
    path = check_job(bench, run.finals[next(iter(run.finals))], bench.size, bench.sha256[BIG])
    settle(path)
    return {
        "seconds": run.seconds,
        "bytes_per_s": bench.size / run.seconds,
        "rss_max_mib": sampler.max_kib[bench.slip.worker_pid()] / 1024,
        "final_from_history_poll": run.from_poll,
        "headers_s": next(iter(run.headers_s.values()), None),
        "server_cpu_pct": 100 * cpu / run.seconds,  # of one core; above 100 = threads overlap
    }


def slip_batch(bench: Bench, rnd: int) -> dict[str, Any]:
    """``bench.jobs`` concurrent jobs of the small file; total time and RSS."""
    import trio

    requests = [(bench.url(SMALL, f"n={n}"), f"job-r{rnd}-{n:02d}.bin") for n in range(bench.jobs)]
    with RssSampler([bench.slip.worker_pid()]) as sampler:
        run = trio.run(run_jobs, bench.slip.port, requests)
    paths = [check_job(bench, e, bench.job_size, bench.sha256[SMALL]) for e in run.finals.values()]
    settle(*paths)
    return {
        "seconds": run.seconds,
        "bytes_per_s": bench.jobs * bench.job_size / run.seconds,
        "rss_max_mib": sampler.max_kib[bench.slip.worker_pid()] / 1024,
        "final_from_history_poll": run.from_poll,
    }


# -- curl and aria2c -----------------------------------------------------------------------


def curl_argv(url: str, path: Path) -> list[str]:
    return ["curl", "-s", "-S", "-f", "-o", str(path), url]


def aria2c_argv(url: str, path: Path, single: bool) -> list[str]:
    argv = ["aria2c", "--no-conf", "-q", "--allow-overwrite=true", "--auto-file-renaming=false"]
    argv += ["-x1", "-s1"] if single else []
    return [*argv, "-d", str(path.parent), "-o", path.name, url]


def run_tool(argv: list[str], path: Path, size: int) -> float:
    """Run one download command; its wall time (the output is checked, not timed)."""
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()}")
    if path.stat().st_size != size:
        raise RuntimeError(f"{argv[0]} wrote {path.stat().st_size} bytes, not {size}")
    return seconds


def tool_single(bench: Bench, tool: str, name: str) -> dict[str, Any]:
    """One download of the big file by curl or aria2c."""
    path = bench.out / name
    url = bench.url(BIG)
    argv = curl_argv(url, path) if tool == "curl" else aria2c_argv(url, path, tool == "aria2c_x1")
    seconds = run_tool(argv, path, bench.size)
    sample: dict[str, Any] = {"seconds": seconds, "bytes_per_s": bench.size / seconds}
    if tool == "curl":  # for information: what the job's fsync would add to curl
        fd = os.open(path, os.O_RDONLY)
        try:
            began = time.perf_counter()
            os.fsync(fd)
            sample["fsync_after_s"] = time.perf_counter() - began
        finally:
            os.close(fd)
    settle(path)
    return sample


def curl_batch(bench: Bench, rnd: int) -> dict[str, Any]:
    """``bench.jobs`` curls at once, one file each; time until the last exits."""
    paths = [bench.out / f"curl-r{rnd}-{n:02d}.bin" for n in range(bench.jobs)]
    began = time.perf_counter()
    procs = [
        subprocess.Popen(
            curl_argv(bench.url(SMALL, f"n={n}"), path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n, path in enumerate(paths)
    ]
    errors = [(p.wait(), p.stderr.read() if p.stderr else b"") for p in procs]
    seconds = time.perf_counter() - began
    for proc in procs:
        if proc.stderr:
            proc.stderr.close()
    failed = [err for status, err in errors if status]
    if failed:
        raise RuntimeError(f"{len(failed)} curls failed: {failed[0]!r}")
    wrong = [p for p in paths if p.stat().st_size != bench.job_size]
    if wrong:
        raise RuntimeError(f"{wrong[0]} has {wrong[0].stat().st_size} bytes")
    settle(*paths)
    return {"seconds": seconds, "bytes_per_s": bench.jobs * bench.job_size / seconds}


# -- the run -------------------------------------------------------------------------------


def measure(bench: Bench, rounds: int) -> dict[str, Any]:
    """Warm up, then ``rounds`` rounds of the single download and of the batch."""
    single: dict[str, list[dict[str, Any]]] = {tool: [] for tool in TOOLS}
    batch: dict[str, list[dict[str, Any]]] = {"slipstream": [], "curl": []}
    subprocess.run(["curl", "-s", "-f", "-o", os.devnull, bench.url(BIG)], check=True)
    trial = slip_batch(bench, -1)  # also proves the set-up before the long runs
    log(f"warm-up batch: {trial['seconds']:.2f} s")
    floors: dict[str, list[dict[str, float]]] = {"httpx": [], "httpx+digests": [], "disk": []}
    for rnd in range(rounds):
        for floor, digest in (("httpx", False), ("httpx+digests", True)):
            sample = httpx_receive(bench.url(BIG), digest=digest)
            floors[floor].append(sample)
            log(
                f"round {rnd + 1}/{rounds} floor  {floor:<15}{sample['seconds']:>7.2f} s "
                f"{sample['bytes_per_s'] / 1e6:>8.1f} MB/s (in-process, no disk)"
            )
        sample = durable_write(bench.root, bench.size)
        floors["disk"].append(sample)
        log(
            f"round {rnd + 1}/{rounds} floor  {'disk':<15}{sample['seconds']:>7.2f} s "
            f"{sample['bytes_per_s'] / 1e6:>8.1f} MB/s (from memory into a .part, then fsync)"
        )
        order = TOOLS[rnd % len(TOOLS) :] + TOOLS[: rnd % len(TOOLS)]
        for tool in order:
            name = f"{tool}-r{rnd}.bin"
            if tool == "slipstream":
                sample = slip_single(bench, name)
            else:
                sample = tool_single(bench, tool, name)
            single[tool].append(sample)
            extra = ""
            if tool == "slipstream":
                head = sample["headers_s"]
                extra = f" rss {sample['rss_max_mib']:.1f} MiB, cpu {sample['server_cpu_pct']:.0f}%"
                extra += f", head after {head:.3f} s" if head is not None else ""
            elif tool == "curl":
                extra = f" (then fsync {sample['fsync_after_s']:.2f} s)"
            log(
                f"round {rnd + 1}/{rounds} single {tool:<15}{sample['seconds']:>7.2f} s "
                f"{sample['bytes_per_s'] / 1e6:>8.1f} MB/s{extra}"
            )
        runners: list[tuple[str, Callable[[Bench, int], dict[str, Any]]]] = [
            ("slipstream", slip_batch),
            ("curl", curl_batch),
        ]
        for tool, runner in runners if rnd % 2 == 0 else runners[::-1]:
            sample = runner(bench, rnd)
            batch[tool].append(sample)
            log(
                f"round {rnd + 1}/{rounds} {bench.jobs} x {bench.job_size // MIB} MiB {tool:<10}"
                f"{sample['seconds']:>7.2f} s {sample['bytes_per_s'] / 1e6:>8.1f} MB/s"
            )
    return {"single": single, "batch": batch, "floors": floors}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Make the files, start nginx and slipstream, measure, stop them."""
    info = machine_info()
    info["curl"] = tool_version(["curl", "--version"])
    info["aria2c"] = tool_version(["aria2c", "--version"])
    with tempfile.TemporaryDirectory(prefix="slipstream-fetch-", dir=args.tmpdir) as tmpname:
        tmp = Path(tmpname)
        tmp.chmod(0o755)  # nginx workers run as an unprivileged user when we are root
        bench = Bench(
            tmp=tmp,
            src=tmp / "src",
            root=tmp / "root",
            out=tmp / "out",
            nginx=Nginx(),
            slip=JobServer(),
            size=args.size_mib * MIB,
            job_size=args.job_mib * MIB,
            jobs=args.jobs,
        )
        for folder in (bench.src, bench.root, bench.out):
            folder.mkdir(mode=0o755)
        bench.sha256[BIG] = make_file(bench.src / BIG, bench.size)
        bench.sha256[SMALL] = make_file(bench.src / SMALL, bench.job_size)
        os.sync()
        try:
            bench.nginx.start(bench.src, tmp / "nginx")
            bench.slip.start(bench.root, tmp)
            pid = bench.slip.worker_pid()
            idle = (proc_status_kib(pid, "VmRSS") or 0) / 1024
            raw = measure(bench, args.rounds)
            hwm = (proc_status_kib(pid, "VmHWM") or 0) / 1024
        finally:
            bench.slip.stop()
            bench.nginx.stop()
    info["loadavg_end"] = os.getloadavg()
    summary = summarize(raw, hwm)
    data = {
        "benchmark": "fetch",
        "method": "slipstream job (start request -> final websocket event: fsynced, renamed, "
        "hashed) vs curl -o / aria2c (process wall time) of the same file from nginx on "
        "loopback; downloads deleted and os.sync() between runs",
        "quick": args.quick,
        "rounds": args.rounds,
        "size_bytes": bench.size,
        "batch": {"jobs": bench.jobs, "job_bytes": bench.job_size, "max_concurrent": 8},
        "targets": {"slipstream/curl": SINGLE_TARGET, "rss_mib": RSS_LIMIT_MIB},
        "machine": info,
        "idle_rss_mib": idle,
        **summary,
        "samples": raw,
    }
    return data


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 MiB, 50 x 2 MiB, one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument("--size-mib", type=int, default=None, help="big file (default 1024)")
    parser.add_argument("--jobs", type=int, default=None, help="concurrent jobs (default 50)")
    parser.add_argument("--job-mib", type=int, default=None, help="file per job (default 20)")
    parser.add_argument("--tmpdir", default=None, help="where the temporary directory goes")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
        elif getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")
    args.full = not args.quick and all(getattr(args, k) == v for k, v in DEFAULTS.items())
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 if every target is met, 1 if not, 2 if it cannot run."""
    args = parse_args(argv)
    tools = {
        "nginx": nginx_binary(),
        "curl": shutil.which("curl"),
        "aria2c": shutil.which("aria2c"),
    }
    missing = [name for name, path in tools.items() if not path]
    if missing:
        log(
            f"fetch: {' and '.join(missing)} not found; install with\n"
            "    sudo apt-get install nginx-light curl aria2\n(or run `make bench`, which does)"
        )
        return 2
    where = Path(args.tmpdir or tempfile.gettempdir())
    need = needed_bytes(args.size_mib * MIB, args.job_mib * MIB, args.jobs)
    free = shutil.disk_usage(where).free
    if free < need:
        log(f"fetch: {where} has {free / 2**30:.1f} GiB free; this run needs {need / 2**30:.1f}")
        return 2
    # SIGTERM (e.g. from run_all.py) unwinds like Ctrl-C, so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        data = run(args)
    except KeyboardInterrupt:
        log("fetch: interrupted; servers stopped")
        return 130
    except RuntimeError as exc:
        log(f"FAIL: fetch: {exc}")
        return 1
    print_table(data)
    if args.full:
        out = write_results("fetch", data)
        chart = RESULTS / "fetch.png"
        draw_chart(chart, data)
        print(f"wrote {out} and {chart}")
    else:
        print("partial run (--quick or sizes changed): bench/results/ left as it was")
    failed = [name for name, ok in data["passed"].items() if not ok]
    if failed:
        log(f"FAIL: below target: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

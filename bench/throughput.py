"""Throughput: slipstream against nginx on loopback, side by side in one run.

Both servers serve the same temporary directory (a 1 GiB, a 1 MiB and a 1 KiB file).
``wrk`` drives each case against nginx and slipstream alternately, for several rounds;
the medians and the slipstream/nginx ratios are printed as a table and written to
``bench/results/throughput.json`` with a PNG chart next to it.

Cases: 1 GiB x 1 connection, 1 GiB x 8, 1 MiB x 32, 1 KiB x 32 keep-alive, and
256 connections each downloading the 1 GiB file while the server's RSS is sampled.

Targets (exit status 1 when one is missed): 1 GiB bytes/s ratio >= 0.95, 1 KiB
requests/s ratio >= 0.20, slipstream RSS < 150 MiB under the 256 clients.

Usage: ``python bench/throughput.py [--quick] [--cases big1,small32] [--rounds N]
[--nginx-sndbuf 64k]``.
Nothing is installed here: without nginx or wrk the script says what to install.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import RESULTS, median, write_results

GIB = 1024**3
MIB = 1024**2
KIB = 1024
TOKEN = "bench-token"
RSS_LIMIT_MIB = 150.0
FILES = {"file-1g.bin": GIB, "file-1m.bin": MIB, "file-1k.bin": KIB}

# wrk calls done() once at the end; one machine-readable line beats scraping its table.
WRK_DONE_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%d,\\"bytes\\":%.0f,\\"duration_us\\":%.0f,\\"connect\\":%d,"
    .. "\\"read\\":%d,\\"write\\":%d,\\"status\\":%d,\\"timeout\\":%d}\\n",
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout))
end
"""

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    sendfile on;
    tcp_nopush on;
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 65;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port}{listen_options};
        root {root};
    }}
}}
"""


@dataclass(frozen=True)
class Case:
    """One load shape; ``metric`` names what its target is judged on."""

    key: str
    label: str
    file: str
    connections: int
    seconds: float
    quick_seconds: float
    metric: str  # "bytes_per_s", "requests_per_s", "rss" or "" (reported only)
    target: float | None

    def target_text(self) -> str:
        if self.metric == "rss":
            return f"RSS<{RSS_LIMIT_MIB:.0f}MiB"
        if self.target is None:
            return "-"
        unit = "B/s" if self.metric == "bytes_per_s" else "req/s"
        return f"{unit}>={self.target:.2f}"


CASES = [
    Case("big1", "1 GiB x 1 conn", "file-1g.bin", 1, 10, 3, "bytes_per_s", 0.95),
    Case("big8", "1 GiB x 8 conns", "file-1g.bin", 8, 10, 3, "bytes_per_s", 0.95),
    Case("mid32", "1 MiB x 32 conns", "file-1m.bin", 32, 8, 3, "", None),
    Case("small32", "1 KiB x 32 keep-alive", "file-1k.bin", 32, 8, 3, "requests_per_s", 0.20),
    Case("rss256", "1 GiB x 256 conns (RSS)", "file-1g.bin", 256, 5, 3, "rss", None),
]


class RssSampler:
    """Samples VmRSS of some pids every ``interval`` seconds in a thread; keeps the max."""

    def __init__(self, pids: Sequence[int], interval: float = 0.05) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.max_kib: dict[int, int] = {pid: 0 for pid in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                rss = proc_status_kib(pid, "VmRSS")
                if rss is not None and rss > self.max_kib[pid]:
                    self.max_kib[pid] = rss
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def proc_status_kib(pid: int, field: str) -> int | None:
    """A ``kB`` field (VmRSS, VmHWM) of ``/proc/<pid>/status``, or None if gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0.0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nginx_binary() -> str:
    """nginx on PATH, else in /usr/sbin (not on a normal user's PATH); "" if absent."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin") or ""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Block until something accepts on ``port``; fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} during startup")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class BenchServer:
    """A server under test, run in its own session so cleanup can signal its whole group."""

    name = ""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def url(self, file: str) -> str:
        raise NotImplementedError

    def headers(self) -> list[str]:
        return []

    def worker_pid(self) -> int:
        """The process that does the serving (for RSS)."""
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after 5 s; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Nginx(BenchServer):
    """nginx with one worker (slipstream is one process), sendfile on, no access log."""

    name = "nginx"

    def __init__(self, sndbuf: str = "") -> None:
        super().__init__()
        self.sndbuf = sndbuf

    def start(self, root: Path, tmp: Path) -> None:
        self.port = free_port()
        tmp.mkdir()
        conf = tmp / "nginx.conf"
        options = f" sndbuf={self.sndbuf}" if self.sndbuf else ""
        conf.write_text(
            NGINX_CONF.format(tmp=tmp, port=self.port, root=root, listen_options=options)
        )
        self.proc = subprocess.Popen(
            [nginx_binary(), "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        wait_for_port(self.port, self.proc)

    def url(self, file: str) -> str:
        return f"http://127.0.0.1:{self.port}/{file}"

    def worker_pid(self) -> int:
        assert self.proc is not None
        master = self.proc.pid
        for _ in range(100):
            try:
                children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
            except OSError:
                children = []
            if children:
                return int(children[0])
            time.sleep(0.05)
        raise RuntimeError("nginx worker process not found")


class Slipstream(BenchServer):
    """``python -m slipstream serve`` with the download cap, logging and access log off."""

    name = "slipstream"

    def start(self, root: Path, tmp: Path) -> None:
        flags = {
            "--root": str(root),
            "--state-dir": str(tmp / "slipstream-state"),
            "--host": "127.0.0.1",
            "--port": "0",
            "--token": TOKEN,
            "--max-download-size": "0",
            "--log-level": "warning",
        }
        argv = [sys.executable, "-m", "slipstream", "serve", "--no-access-log"]
        for flag, value in flags.items():
            argv += [flag, value]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        match = re.search(r":(\d+)/", line)
        if not match:
            raise RuntimeError(f"slipstream did not report its port: {line!r}")
        self.port = int(match.group(1))
        # The rest of stdout is not read: the server prints one more line, then nothing.
        wait_for_port(self.port, self.proc)

    def url(self, file: str) -> str:
        return f"http://127.0.0.1:{self.port}/api/download?filepath={file}"

    def headers(self) -> list[str]:
        return [f"Authorization: Bearer {TOKEN}"]


def run_wrk(
    server: BenchServer, case: Case, seconds: float, script: Path, timeout_s: int
) -> dict[str, Any]:
    """One wrk run with RSS sampling; returns the raw sample."""
    cmd = ["wrk", "-t1", f"-c{case.connections}", f"-d{seconds:g}s", f"--timeout={timeout_s}s"]
    for header in server.headers():
        cmd += ["-H", header]
    cmd += ["-s", str(script), server.url(case.file)]
    pid = server.worker_pid()
    cpu_before = proc_cpu_seconds(pid)
    with RssSampler([pid]) as sampler:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    duration = raw["duration_us"] / 1e6
    cpu = proc_cpu_seconds(pid) - cpu_before
    return {
        **raw,
        "requests_per_s": raw["requests"] / duration,
        "bytes_per_s": raw["bytes"] / duration,
        "rss_max_mib": sampler.max_kib[pid] / 1024,
        "server_cpu_pct": 100 * cpu / duration,
        "server_cpu_s_per_gb": cpu / (raw["bytes"] / 1e9) if raw["bytes"] else None,
        "hwm_mib": (proc_status_kib(pid, "VmHWM") or 0) / 1024,
    }


def make_files(root: Path) -> None:
    """The data files: 1 MiB of random bytes, repeated up to each size."""
    block = os.urandom(MIB)
    for name, size in FILES.items():
        with open(root / name, "wb") as handle:
            left = size
            while left:
                chunk = block[: min(left, MIB)]
                handle.write(chunk)
                left -= len(chunk)


def tool_version(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine_info() -> dict[str, Any]:
    """What the numbers depend on."""
    import slipstream.ext  # noqa: F401 - fills IMPLEMENTATIONS
    from slipstream.ext import IMPLEMENTATIONS

    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "nginx": tool_version([nginx_binary(), "-v"]),
        "wrk": tool_version(["wrk", "-v"]),
        "slipstream_ext": dict(IMPLEMENTATIONS),
        "loadavg_start": os.getloadavg(),
    }


def summarize(case: Case, samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per server, ratios slipstream/nginx, and the target verdict."""
    med = {
        name: {
            key: median([s[key] for s in runs])
            for key in ("requests_per_s", "bytes_per_s", "rss_max_mib", "server_cpu_pct")
        }
        for name, runs in samples.items()
    }
    errors = {
        name: sum(s["status"] + s["connect"] + s["read"] + s["write"] for s in runs)
        for name, runs in samples.items()
    }
    ratio = {  # None when nginx completed nothing (1 GiB requests in a short run)
        key: (med["slipstream"][key] / med["nginx"][key]) if med["nginx"][key] else None
        for key in ("requests_per_s", "bytes_per_s")
    }
    peak = {name: max(s["rss_max_mib"] for s in runs) for name, runs in samples.items()}
    passed: bool | None
    if case.metric == "rss":
        passed = peak["slipstream"] < RSS_LIMIT_MIB
    elif case.target is not None:
        passed = (ratio[case.metric] or 0.0) >= case.target
    else:
        passed = None
    if errors["slipstream"] or errors["nginx"]:
        passed = False  # a server that answers errors fast is not fast
    return {
        "label": case.label,
        "file": case.file,
        "connections": case.connections,
        "metric": case.metric,
        "target": case.target if case.metric != "rss" else RSS_LIMIT_MIB,
        "target_text": case.target_text(),
        "median": med,
        "ratio": ratio,
        "errors": errors,
        "peak_rss_mib": peak,
        "passed": passed,
        "samples": samples,
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    head = (
        f"{'case':<24}{'nginx r/s':>11}{'slip r/s':>11}{'ratio':>7}"
        f"{'nginx MB/s':>12}{'slip MB/s':>11}{'ratio':>7}"
        f"{'nginx RSS':>10}{'slip RSS':>10}  {'target':<14}result"
    )
    print(head)
    print("-" * len(head))
    for res in results.values():
        med, ratio = res["median"], res["ratio"]
        verdict = {True: "PASS", False: "FAIL", None: "-"}[res["passed"]]
        if any(res["errors"].values()):
            verdict += f" (errors {res['errors']})"
        print(
            f"{res['label']:<24}"
            f"{med['nginx']['requests_per_s']:>11.1f}{med['slipstream']['requests_per_s']:>11.1f}"
            f"{_fmt_ratio(ratio['requests_per_s'])}"
            f"{med['nginx']['bytes_per_s'] / 1e6:>12.1f}"
            f"{med['slipstream']['bytes_per_s'] / 1e6:>11.1f}{_fmt_ratio(ratio['bytes_per_s'])}"
            f"{res['peak_rss_mib']['nginx']:>9.1f}M{res['peak_rss_mib']['slipstream']:>9.1f}M"
            f"  {res['target_text']:<14}{verdict}"
        )
    print("(MB = 10^6 bytes; r/s = completed requests/s; RSS = max sampled VmRSS, MiB)")
    cpu = ", ".join(
        f"{key} {res['median']['nginx']['server_cpu_pct']:.0f}/"
        f"{res['median']['slipstream']['server_cpu_pct']:.0f}"
        for key, res in results.items()
    )
    print(f"server CPU, % of one core, nginx/slipstream: {cpu}")


def _fmt_ratio(value: float | None) -> str:
    return f"{value:>7.2f}" if value is not None else f"{'-':>7}"


def draw_chart(path: Path, results: dict[str, dict[str, Any]]) -> None:
    """Left: ratio slipstream/nginx per case (targets marked); right: peak RSS per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [res["label"] for res in results.values()]
    xs = list(range(len(labels)))
    width = 0.38
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    series = ((-width / 2, "requests_per_s", "requests/s"), (width / 2, "bytes_per_s", "bytes/s"))
    for offset, key, name in series:
        values = [res["ratio"][key] or 0.0 for res in results.values()]
        left.bar([x + offset for x in xs], values, width, label=f"{name} ratio")
        for x, res in zip(xs, results.values(), strict=True):
            if res["metric"] == key and res["target"] is not None:
                ends = (x + offset - width / 2, x + offset + width / 2)
                left.hlines(res["target"], *ends, colors="red", linestyles="dashed")
    left.axhline(1.0, color="grey", linewidth=0.8)
    left.plot([], [], "r--", label="target")
    left.set_xticks(xs, labels, rotation=20, ha="right")
    left.set_ylabel("slipstream / nginx")
    left.set_title("Throughput ratio (median of rounds)")
    left.legend()
    for offset, name in ((-width / 2, "nginx"), (width / 2, "slipstream")):
        values = [res["peak_rss_mib"][name] for res in results.values()]
        right.bar([x + offset for x in xs], values, width, label=name)
    right.axhline(RSS_LIMIT_MIB, color="red", linestyle="dashed", label="slipstream limit")
    right.set_xticks(xs, labels, rotation=20, ha="right")
    right.set_ylabel("peak RSS (MiB)")
    right.set_title("Server memory during each case")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _die_with_parent() -> None:
    """In the server's child process: get SIGTERM if this script dies (even by SIGKILL)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, one round")
    parser.add_argument(
        "--cases",
        default=",".join(c.key for c in CASES),
        help="comma-separated subset of: " + ", ".join(c.key for c in CASES),
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument(
        "--nginx-sndbuf",
        default="",
        metavar="SIZE",
        help="give nginx's listen socket sndbuf=SIZE (e.g. 64k; default: kernel autotuning)",
    )
    args = parser.parse_args(argv)
    known = {c.key for c in CASES}
    chosen = [k.strip() for k in args.cases.split(",") if k.strip()]
    unknown = [k for k in chosen if k not in known]
    if unknown or not chosen:
        parser.error(f"unknown case(s) {unknown}; choose from {sorted(known)}")
    args.case_list = [c for c in CASES if c.key in chosen]
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start both servers, run every case for both alternately, stop the servers."""
    cases: list[Case] = args.case_list
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        c.key: {"nginx": [], "slipstream": []} for c in cases
    }
    nginx, slip = Nginx(args.nginx_sndbuf), Slipstream()
    servers: list[BenchServer] = [nginx, slip]
    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="slipstream-bench-") as tmpname:
        tmp = Path(tmpname)
        tmp.chmod(0o755)  # nginx workers run as an unprivileged user when we are root
        root = tmp / "data"
        root.mkdir(mode=0o755)
        make_files(root)
        script = tmp / "done.lua"
        script.write_text(WRK_DONE_LUA)
        try:
            nginx.start(root, tmp / "nginx")
            slip.start(root, tmp)
            idle = {s.name: (proc_status_kib(s.worker_pid(), "VmRSS") or 0) / 1024 for s in servers}
            warm = Case("warm", "warm-up", "file-1k.bin", 4, 1, 1, "", None)
            for server in servers:
                run_wrk(server, warm, 1, script, 120)
            for rnd in range(args.rounds):
                for i, case in enumerate(cases):
                    order = servers if (rnd + i) % 2 == 0 else servers[::-1]
                    seconds = case.quick_seconds if args.quick else case.seconds
                    for server in order:
                        sample = run_wrk(server, case, seconds, script, 120)
                        samples[case.key][server.name].append(sample)
                        print(
                            f"round {rnd + 1}/{args.rounds} {case.key:<8} {server.name:<10} "
                            f"{sample['requests_per_s']:>10.1f} req/s "
                            f"{sample['bytes_per_s'] / 1e6:>9.1f} MB/s "
                            f"rss {sample['rss_max_mib']:.1f} MiB",
                            file=sys.stderr,
                            flush=True,
                        )
                        time.sleep(0.5)
            hwm = {s.name: (proc_status_kib(s.worker_pid(), "VmHWM") or 0) / 1024 for s in servers}
        finally:
            for server in servers:
                server.stop()
    info["loadavg_end"] = os.getloadavg()
    results = {c.key: summarize(c, samples[c.key]) for c in cases}
    return {
        "benchmark": "throughput",
        "method": "wrk -t1 -cN -dS over loopback; bytes/s counts every byte read, "
        "including responses still in flight when the run ends",
        "quick": args.quick,
        "rounds": args.rounds,
        "nginx_sndbuf": args.nginx_sndbuf or "autotuned",
        "durations_s": {c.key: c.quick_seconds if args.quick else c.seconds for c in cases},
        "machine": info,
        "idle_rss_mib": idle,
        "final_vmhwm_mib": hwm,
        "cases": results,
        "passed": all(r["passed"] is not False for r in results.values()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 if every target is met, 1 if not, 2 if a tool is missing."""
    args = parse_args(argv)
    missing = [
        name for name, path in (("nginx", nginx_binary()), ("wrk", shutil.which("wrk"))) if not path
    ]
    if missing:
        print(
            f"throughput: {' and '.join(missing)} not found; install with\n"
            "    sudo apt-get install nginx-light wrk\n(or run `make bench`, which does)",
            file=sys.stderr,
        )
        return 2
    # SIGTERM (e.g. from run_all.py) unwinds like Ctrl-C, so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        data = run(args)
    except KeyboardInterrupt:
        print("throughput: interrupted; servers stopped", file=sys.stderr)
        return 130
    print_table(data["cases"])
    print(f"idle RSS MiB {data['idle_rss_mib']}, final VmHWM MiB {data['final_vmhwm_mib']}")
    if args.quick or len(args.case_list) < len(CASES):
        print("partial run (--quick or --cases): bench/results/ left as it was")
    else:
        out = write_results("throughput", data)
        chart = RESULTS / "throughput.png"
        draw_chart(chart, data["cases"])
        print(f"wrote {out} and {chart}")
    failed = [r["label"] for r in data["cases"].values() if r["passed"] is False]
    if failed:
        print(f"FAIL: below target: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

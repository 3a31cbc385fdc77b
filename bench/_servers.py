"""The servers and the load generator shared by the HTTP benchmarks.

nginx (the anchor: one worker, sendfile, no access log), a second nginx that
``proxy_pass``es to it, slipstream as a subprocess, the benchmark's own small servers
(``python bench/<script> ... PORT``), ``wrk`` with a Lua hook that reports JSON, and the
``/proc`` samplers for RSS and CPU.  Used by ``throughput.py`` and ``small_requests.py``;
``fetch.py`` and ``zip.py`` use the servers (through :mod:`_feature_servers`) and the
samplers.
"""

from __future__ import annotations

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
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN = "bench-token"


RSS_LIMIT_MIB = 150.0


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
worker_processes {workers};
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
        {server_body}
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

    def serving_pids(self) -> list[int]:
        """Every process that serves (their CPU time is counted): the worker by default."""
        return [self.worker_pid()]

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

    def __init__(self, sndbuf: str = "", workers: int = 1) -> None:
        super().__init__()
        self.sndbuf = sndbuf
        self.workers = workers
        if workers > 1:
            self.name = f"nginx x{workers}"

    def server_body(self, root: Path) -> str:
        """What the ``server`` block does besides listening: serve ``root``."""
        return f"root {root};"

    def start(self, root: Path, tmp: Path) -> None:
        self.port = free_port()
        tmp.mkdir()
        conf = tmp / "nginx.conf"
        options = f" sndbuf={self.sndbuf}" if self.sndbuf else ""
        body = self.server_body(root)
        conf.write_text(
            NGINX_CONF.format(
                tmp=tmp,
                port=self.port,
                server_body=body,
                listen_options=options,
                workers=getattr(self, "workers", 1),
            )
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
        return self.serving_pids()[0]

    def serving_pids(self) -> list[int]:
        assert self.proc is not None
        return children_of(self.proc.pid, getattr(self, "workers", 1))


def children_of(parent: int, count: int) -> list[int]:
    """The first ``count`` child processes of ``parent`` (waits up to 5 s for them)."""
    for _ in range(100):
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            children = []
        if len(children) >= count:
            return [int(child) for child in children[:count]]
        time.sleep(0.05)
    raise RuntimeError(f"{count} worker processes of {parent} not found")


class NginxProxy(Nginx):
    """A second nginx that ``proxy_pass``es every request to an upstream on 127.0.0.1.

    One worker, like the upstream; every proxy setting is nginx's default, so proxy
    buffering is on (``proxy_buffers 8 4k|8k``, a body the client is slower to take is
    spooled to a temporary file in the run's directory, up to ``proxy_max_temp_file_size``
    1 GiB) and the upstream is spoken to in HTTP/1.0, one connection per request.
    ``root`` of :meth:`start` is not used.
    """

    name = "nginx proxy_pass"

    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self.upstream_port = upstream_port

    def server_body(self, root: Path) -> str:
        return f"location / {{ proxy_pass http://127.0.0.1:{self.upstream_port}; }}"


class ScriptServer(BenchServer):
    """One of the benchmark's own small servers: ``python bench/<script> ARGS... PORT``."""

    def __init__(self, script: str, args: Sequence[str]) -> None:
        super().__init__()
        self.name = script
        self.script = Path(__file__).resolve().parent / script
        self.args = list(args)

    def start(self, root: Path | None = None, tmp: Path | None = None) -> None:
        """Start the script on a free port (``root`` and ``tmp`` are not used)."""
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script), *self.args, str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        wait_for_port(self.port, self.proc)

    def url(self, file: str) -> str:
        return f"http://127.0.0.1:{self.port}/{file}"


class Slipstream(BenchServer):
    """``python -m slipstream serve`` with the download cap, logging and access log off."""

    name = "slipstream"

    def __init__(self, workers: int = 1) -> None:
        super().__init__()
        self.workers = workers
        if workers > 1:
            self.name = f"slipstream x{workers}"

    def extra_args(self, tmp: Path) -> list[str]:
        """More ``serve`` flags (subclasses add theirs: downloads, the zip allow list)."""
        return ["--workers", str(self.workers)] if self.workers > 1 else []

    def worker_pid(self) -> int:
        assert self.proc is not None
        if self.workers == 1:
            return self.proc.pid
        return children_of(self.proc.pid, self.workers)[0]

    def serving_pids(self) -> list[int]:
        if self.workers == 1:
            return [self.worker_pid()]
        assert self.proc is not None
        return children_of(self.proc.pid, self.workers)

    def state_dir(self, tmp: Path) -> Path:
        """Where the server keeps its state (``--state-dir``)."""
        return tmp / "slipstream-state"

    def start(self, root: Path, tmp: Path) -> None:
        flags = {
            "--root": str(root),
            "--state-dir": str(self.state_dir(tmp)),
            "--host": "127.0.0.1",
            "--port": "0",
            "--token": TOKEN,
            "--max-download-size": "0",
            "--log-level": "warning",
        }
        argv = [sys.executable, "-m", "slipstream", "serve", "--no-access-log"]
        for flag, value in flags.items():
            argv += [flag, value]
        argv += self.extra_args(tmp)
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
    pids = server.serving_pids()
    cpu_before = {p: proc_cpu_seconds(p) for p in pids}
    with RssSampler([pid]) as sampler:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    duration = raw["duration_us"] / 1e6
    cpu_by_process = {str(p): proc_cpu_seconds(p) - cpu_before[p] for p in pids}
    cpu = sum(cpu_by_process.values())
    return {
        **raw,
        "requests_per_s": raw["requests"] / duration,
        "bytes_per_s": raw["bytes"] / duration,
        "rss_max_mib": sampler.max_kib[pid] / 1024,
        "server_cpu_pct": 100 * cpu / duration,
        "server_cpu_s_by_process": cpu_by_process,
        "server_cpu_s_per_gb": cpu / (raw["bytes"] / 1e9) if raw["bytes"] else None,
        "hwm_mib": (proc_status_kib(pid, "VmHWM") or 0) / 1024,
    }


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


def _die_with_parent() -> None:
    """In the server's child process: get SIGTERM if this script dies (even by SIGKILL)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)

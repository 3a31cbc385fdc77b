"""``slipstream serve --workers N``: N worker processes on one port, and their supervisor.

The supervisor (this process, which never runs Trio) binds the port, checks and
migrates the stores once, then forks N workers.  Each worker runs the ordinary server
(:func:`~.cli.run_server`) on the listening socket of its *slot* and reports on a pipe
when it serves; once every worker does, the supervisor prints the banner.

Listening: one ``SO_REUSEPORT`` socket per slot, all bound by the supervisor and kept
open by it for its whole life; a worker inherits its slot's socket.  The kernel spreads
new connections over the sockets by a hash of the addresses, so the workers share the
load evenly even when one of them accepts faster (with one shared accept queue, Trio's
accept loop lets whichever worker is awake take a whole burst).  Because the supervisor
holds every socket, the port is never released while it runs, a bind error is reported
before any worker starts, and the connections that arrive for a dead worker wait in its
slot's queue until the restarted worker accepts them (none is refused or reset).

A worker that dies is started again in its slot after a backoff (0.1 s, doubling up to
10 s; back to 0.1 s once a worker has served for 30 s), and a warning is logged.
SIGTERM or SIGINT (Ctrl-C) make the supervisor stop accepting (it closes its copies of
the sockets), send SIGTERM to every worker, which drains as a single server does, wait
for them (the drain timeout plus 5 s, then SIGKILL) and exit 0.  Workers ignore SIGINT,
so the Ctrl-C a terminal sends to the whole process group reaches them only through
the supervisor; a worker whose supervisor is killed (SIGKILL) gets SIGTERM from the
kernel (``PR_SET_PDEATHSIG``) and drains too.

Metrics (``--metrics``, ``--metrics-bind``) add up over the workers: the supervisor puts
them all in prometheus_client's multiprocess mode on one directory, and only worker 0
opens the separate ``--metrics-bind`` listener (any worker answers ``/metrics`` on the
main port).

With ``$SLIPSTREAM_TEST_WORKER_HEADER=1`` every reply carries ``X-Slipstream-Worker:
SLOT-PID`` (:func:`~.http1.reveal_worker`), so tests can see which worker answered.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NoReturn

from slipstream.statefiles import open_store, state_lock

from .cli_flags import MULTIPROC_ENV
from .config import Config, WorkerSlot
from .ws_shared_limits import create_table

__all__ = ["BACKOFF_MAX", "BACKOFF_START", "STABLE_AFTER", "Supervisor", "backoff", "bind_slots"]

log = logging.getLogger("slipstream.server")

BACKOFF_START = 0.1
BACKOFF_MAX = 10.0
STABLE_AFTER = 30.0
"""Seconds a worker must serve before its next death restarts it without delay growth."""
_PR_SET_PDEATHSIG = 1


def backoff(failures: int) -> float:
    """Seconds to wait before starting a worker that died ``failures`` times in a row."""
    return float(min(BACKOFF_MAX, BACKOFF_START * 2.0 ** max(0, failures - 1)))


def bind_slots(host: str, port: int, slots: int) -> list[list[socket.socket]]:
    """``slots`` lists of listening sockets, one per address ``host`` resolves to, all
    on one port (``port`` 0: the one the system picks for the first socket).

    Raises :class:`~.app.ListenError` (one line naming host and port).
    """
    from .app import ListenError

    made: list[list[socket.socket]] = [[] for _ in range(slots)]
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        addresses = list(dict.fromkeys((info[0], info[4]) for info in infos))
        for family, address in addresses:
            for slot in made:
                sock = socket.socket(family, socket.SOCK_STREAM)
                slot.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((address[0], port, *address[2:]))
                if port == 0:
                    port = sock.getsockname()[1]
                sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        for slot in made:
            for sock in slot:
                sock.close()
        shown = f"[{host}]" if ":" in host else host
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ListenError(exc.errno, f"cannot listen on {shown}:{port}: {reason}") from exc
    return made


@dataclass(eq=False)
class _Slot:
    index: int
    sockets: list[socket.socket]
    pid: int | None = None
    ready_fd: int | None = None
    """Read end of the pipe on which the worker says it serves."""
    ready_at: float | None = None
    failures: int = 0
    restart_at: float | None = None
    history: list[int] = field(default_factory=list)
    """Pids this slot has run (tests and logs)."""


class Supervisor:
    """Runs ``workers`` worker processes for a prepared ``config`` (see the module doc)."""

    def __init__(self, config: Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self._slots: list[_Slot] = []
        self._signals: list[int] = []
        self._selector = selectors.DefaultSelector()
        self._rate_table: int | None = None
        self._wake: tuple[socket.socket, ...] = ()
        self._metrics_dir: Path | None = None
        """prometheus_client's multiprocess directory of the workers (metrics on)."""

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit status (0 after a drain)."""
        config = self.config
        problem = self._share_metrics()  # before anything imports prometheus_client
        if problem is not None:
            return _fail(problem, 2)
        from .app import ListenError

        try:
            check_stores(config)
            sockets = bind_slots(config.host, config.port, self.workers)
        except ListenError as exc:
            return _fail(exc.strerror or str(exc), 1)
        except Exception as exc:
            from .cli import failure_of

            failure = failure_of(exc, config)
            if failure is None:
                raise
            return _fail(*failure)
        port = sockets[0][0].getsockname()[1]
        if config.ws_rate_limit > 0:
            self._rate_table = create_table()
        self._slots = [_Slot(index, slot) for index, slot in enumerate(sockets)]
        wake_read, wake_write = socket.socketpair()
        self._wake = (wake_read, wake_write)
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        self._selector.register(wake_read, selectors.EVENT_READ, None)
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)
        }
        old_wakeup = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
        try:
            return self._supervise(port, wake_read)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._close_sockets()
            self._selector.close()
            if self._rate_table is not None:
                os.close(self._rate_table)
            wake_read.close()
            wake_write.close()

    def _share_metrics(self) -> str | None:
        """With metrics on, put every worker in prometheus_client's multiprocess mode on
        one emptied directory (``$PROMETHEUS_MULTIPROC_DIR``, else ``metrics`` in the state
        dir), so a scrape of any worker adds up all of them; why not, or None."""
        config = self.config
        if not config.metrics_enabled:
            return None
        directory = Path(config.metrics_dir or config.state_path / "metrics")
        os.environ[MULTIPROC_ENV] = str(directory)
        from .metrics import multiprocess_problem, reset_multiprocess_dir

        reset_multiprocess_dir(directory)
        problem = multiprocess_problem(directory)
        if problem is not None:
            return f"metrics of several workers: {problem}"
        config.metrics_dir = directory
        self._metrics_dir = directory
        return None

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    def _supervise(self, port: int, wake: socket.socket) -> int:
        from .cli import banner

        for slot in self._slots:
            self._start(slot)
        announced = False
        while True:
            if not announced and all(slot.ready_at is not None for slot in self._slots):
                announced = True
                print(banner(self.config, port, self.workers), flush=True)
            timeout = self._next_restart()
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        wake.recv(4096)
                else:
                    self._read_ready(key.data)
            while self._signals:
                signum = self._signals.pop(0)
                if signum != signal.SIGCHLD:
                    log.info("received %s, draining the workers", signal.Signals(signum).name)
                    return self._stop()
            failed = self._reap(announced)
            if failed is not None:  # a worker could not start: stop them all
                self._stop()
                return failed
            now = time.monotonic()
            for slot in self._slots:
                if slot.pid is None and slot.restart_at is not None and now >= slot.restart_at:
                    self._start(slot)

    def _next_restart(self) -> float | None:
        waits = [s.restart_at for s in self._slots if s.pid is None and s.restart_at is not None]
        return max(0.0, min(waits) - time.monotonic()) if waits else None

    def _start(self, slot: _Slot) -> None:
        ready_read, ready_write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(ready_read)
            self._become_worker(slot, ready_write)
        os.close(ready_write)
        slot.pid = pid
        slot.history.append(pid)
        slot.ready_fd = ready_read
        slot.ready_at = None
        slot.restart_at = None
        self._selector.register(ready_read, selectors.EVENT_READ, slot)

    def _become_worker(self, slot: _Slot, ready_write: int) -> NoReturn:
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            self._selector.close()
            for end in self._wake:
                end.close()
            for other in self._slots:
                if other.ready_fd is not None:
                    os.close(other.ready_fd)
                if other is not slot:
                    for sock in other.sockets:
                        sock.close()
            worker = WorkerSlot(slot.index, self.workers, self._rate_table)
            status = run_worker(self.config, worker, slot.sockets, ready_write)
        except BaseException:
            with contextlib.suppress(BaseException):
                log.exception("worker %d failed", slot.index)
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)

    def _read_ready(self, slot: _Slot) -> None:
        assert slot.ready_fd is not None
        try:
            data = os.read(slot.ready_fd, 64)
        except OSError:
            data = b""
        if data:
            slot.ready_at = time.monotonic()
        self._selector.unregister(slot.ready_fd)
        os.close(slot.ready_fd)
        slot.ready_fd = None

    def _reap(self, announced: bool) -> int | None:
        """Collect dead workers and schedule their restart; before every worker has
        served once, a death stops the start: its exit status."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            slot = next((s for s in self._slots if s.pid == pid), None)
            if slot is None:
                continue
            status = os.waitstatus_to_exitcode(wait_status)
            if self._metrics_dir is not None:
                from .metrics import worker_exited

                worker_exited(pid, self._metrics_dir)
            if slot.ready_fd is not None:
                self._read_ready(slot)
            served = slot.ready_at is not None
            slot.pid = None
            if not announced and not served:
                return status if status > 0 else 1
            now = time.monotonic()
            if slot.ready_at is not None and now - slot.ready_at >= STABLE_AFTER:
                slot.failures = 0
            slot.failures += 1
            delay = backoff(slot.failures)
            slot.restart_at = now + delay
            how = (
                f"was killed by {signal.Signals(-status).name}"
                if status < 0
                else (f"exited with status {status}")
            )
            log.warning(
                "worker %d (pid %d) %s; starting it again in %.1f s", slot.index, pid, how, delay
            )

    def _stop(self) -> int:
        """Forward SIGTERM to every worker, wait for their drain (then SIGKILL); 0."""
        self._close_sockets()
        for slot in self._slots:
            if slot.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.limits.drain_timeout + 5.0
        self._signals.clear()
        while any(slot.pid is not None for slot in self._slots):
            again = any(signum != signal.SIGCHLD for signum in self._signals)
            self._signals.clear()
            if again or time.monotonic() >= deadline:  # a second Ctrl-C: stop at once
                for slot in self._slots:
                    if slot.pid is not None:
                        log.warning(
                            "worker %d (pid %d) did not drain: killed", slot.index, slot.pid
                        )
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(slot.pid, signal.SIGKILL)
                deadline = float("inf")
            for slot in self._slots:
                if slot.pid is None:
                    continue
                try:
                    pid, _ = os.waitpid(slot.pid, os.WNOHANG)
                except ChildProcessError:
                    pid = slot.pid
                if pid != 0:
                    slot.pid = None
            time.sleep(0.02)
        return 0

    def _close_sockets(self) -> None:
        for slot in self._slots:
            for sock in slot.sockets:
                sock.close()


def run_worker(
    config: Config, worker: WorkerSlot, sockets: list[socket.socket], ready_write: int
) -> int:
    """The body of a worker process: serve on ``sockets`` until SIGTERM; its exit status."""
    import trio

    from .cli import failure_of, run_server
    from .http1 import WORKER_HEADER_ENV, reveal_worker

    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for signum in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches workers as SIGTERM
    _die_with_parent()
    index = worker.index
    config.worker = worker
    if os.environ.get(WORKER_HEADER_ENV) == "1":
        reveal_worker(f"{index}-{os.getpid()}")

    def ready(port: int) -> None:
        os.write(ready_write, b"1")
        os.close(ready_write)

    try:
        trio.run(
            partial(run_server, config, sockets=sockets, ready=ready, signals=(signal.SIGTERM,))
        )
    except BaseException as exc:
        failure = failure_of(exc, config)
        if failure is None:
            raise
        return _fail(f"worker {index}: {failure[0]}", failure[1])
    return 0


def check_stores(config: Config) -> None:
    """Open (check, migrate) and close every store once, before the workers start, so a
    damaged store stops the start with one line and no two workers migrate at once."""
    from .cli_state import stores

    with state_lock(config.state_path):
        for schema in stores():
            open_store(config.state_path / schema.name, schema).close()


def _die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the supervisor dies (Linux ``PR_SET_PDEATHSIG``)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the supervisor died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def _fail(message: str, status: int) -> int:
    print(f"slipstream serve: {' '.join(message.split())}", file=sys.stderr)
    return status

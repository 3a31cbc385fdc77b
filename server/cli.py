"""The ``slipstream`` command (also ``python -m slipstream``): serve, digest, get, state.

Every failure is one line on stderr: 2 for a bad flag or setting, 1 for a failure
(a port in use, an unreadable file, a damaged record store, a failed download), 130 for
Ctrl-C.  Trio wraps exceptions of concurrent tasks in exception groups; :func:`leaves`
looks inside them, so a wrapped ``OSError`` or ``KeyboardInterrupt`` is reported like a
bare one.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import socket
import sqlite3
import sys
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from slipstream.statefiles import StateDamaged

from .cli_flags import build_parser, config_from_args
from .cli_state import state_command
from .config import Config, ConfigError

if TYPE_CHECKING:
    from slipstream.digests import Digests

__all__ = ["build_parser", "config_from_args", "entry", "main", "run_server"]

log = logging.getLogger("slipstream.server")


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``: itself, or every leaf of an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def interrupted(exc: BaseException) -> bool:
    """True when ``exc`` is, or a group holds, a KeyboardInterrupt (Ctrl-C)."""
    return any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves(exc))


def _one_line(text: str) -> str:
    return " ".join(text.split())


async def run_server(
    config: Config,
    *,
    sockets: Sequence[socket.socket] = (),
    ready: Callable[[int], None] | None = None,
    signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
) -> None:
    """Serve until one of ``signals`` arrives, then drain in-flight replies and return.

    ``sockets`` are listening sockets made by the caller (a worker of ``--workers``);
    ``ready(port)`` replaces the banner (the supervisor prints it once every worker
    serves).
    """
    import trio

    from .app import Server

    server = Server(config, sockets=sockets)
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.run)
            # Everything built so far (modules, the app's services) lives as long as the
            # process: keep it out of the garbage collector's full passes, which otherwise
            # walk it all and paused a request for 30 ms (first byte of a zip resume).
            gc.freeze()
            if ready is not None:
                ready(port)
            else:
                print(banner(config, port), flush=True)
            if config.metrics_bind is not None and server.metrics_port is not None:
                metrics_host = config.metrics_bind[0]
                metrics_host = metrics_host if ":" not in metrics_host else f"[{metrics_host}]"
                print(f"metrics at http://{metrics_host}:{server.metrics_port}/metrics", flush=True)
            async for signum in received:
                log.info("received %s, draining", signal.Signals(signum).name)
                server.shutdown()
                break


def banner(config: Config, port: int, workers: int = 1) -> str:
    """The two lines ``slipstream serve`` prints once it serves: the URL and the token."""
    host = config.host if ":" not in config.host else f"[{config.host}]"
    public = f" (public URL {config.public_url})" if config.public_url else ""
    several = f" with {workers} workers" if workers > 1 else ""
    return (
        f"slipstream serving {config.root} at http://{host}:{port}/{public}{several}\n"
        f"access token: {config.tokens[0]}"
    )


def serve_command(args: argparse.Namespace) -> int:
    """``slipstream serve``: validate, prepare, listen; one line and a status on failure."""
    # Trio and the server are imported by the commands that use them (here, and ``get``),
    # so ``slipstream digest`` and ``slipstream state`` start in a fraction of the time.
    import trio

    def fail(message: str, status: int) -> int:
        print(f"slipstream serve: {_one_line(message)}", file=sys.stderr)
        return status

    config = config_from_args(args)
    try:
        config.prepare()
    except ValueError as exc:  # ConfigError, or a bad application/drive folder
        return fail(str(exc), 2)
    except StateDamaged as exc:  # the token or the secret
        return fail(str(exc), 1)
    except OSError as exc:
        return fail(f"cannot prepare {config.root}: {exc.strerror or exc}", 1)
    if args.workers > 1:
        from .workers import Supervisor

        return Supervisor(config, args.workers).run()
    try:
        trio.run(run_server, config)
    except BaseException as exc:
        failure = failure_of(exc, config)
        if failure is None:
            raise
        return fail(*failure)
    return 0


def failure_of(exc: BaseException, config: Config) -> tuple[str, int] | None:
    """The one line and exit status for what stopped a server (None: a bug, re-raised)."""
    from .app import ListenError

    # Trio raises what a task raised inside an exception group (the bind happens
    # in a nursery task), so look at the leaves, not at the type of ``exc``.
    found = leaves(exc)
    if interrupted(exc):  # Ctrl-C before the signal handler was in place
        return "interrupted", 130
    for leaf in found:
        if isinstance(leaf, ConfigError):
            return str(leaf), 2
    for leaf in found:
        if isinstance(leaf, StateDamaged):  # a record store that failed its checks
            return str(leaf), 1
        if isinstance(leaf, sqlite3.Error):  # a read-only or locked state dir, say
            return f"cannot open the stores in {config.state_dir}: {leaf}", 1
    for leaf in found:
        if isinstance(leaf, ListenError):
            return leaf.strerror or str(leaf), 1
    if all(isinstance(leaf, OSError) for leaf in found):
        first = found[0]
        assert isinstance(first, OSError)
        return first.strerror or str(first), 1
    return None


PROGRESS_MIN_SIZE = 64 * 1024 * 1024
"""Files at least this large get a progress bar (on a terminal) while they are hashed."""


def digest_files(paths: Sequence[Path], *, as_json: bool = False) -> int:
    """``slipstream digest``: hash each file once with every algorithm and print the values."""
    from slipstream.digests import hash_path

    status = 0
    for path in paths:
        try:
            size = path.stat().st_size
            if size >= PROGRESS_MIN_SIZE and sys.stderr.isatty():
                digests = _hash_with_progress(path, size)
            else:
                digests = hash_path(path)
        except OSError as exc:
            print(f"slipstream digest: {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 1
            continue
        values = digests.as_dict()
        if as_json:
            print(json.dumps({"file": str(path), **values}))
        else:
            print(f"{path}:")
            for name, value in values.items():
                print(f"  {name:<10} {value}")
            print(f"  {'crc64ecma':<10} {digests.crc64xz} (decimal, as object stores print it)")
    return status


def _hash_with_progress(path: Path, size: int) -> Digests:
    """:func:`~slipstream.digests.hash_path` with a progress bar on stderr (rich is
    imported only here: it costs a tenth of a second at start)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from slipstream.digests import hash_path

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(path.name, total=size)
        return hash_path(path, partial(progress.advance, task))


def get_file(args: argparse.Namespace) -> int:
    """``slipstream get``: download, resume and verify one file; one line on any error."""

    def fail(message: str, status: int = 1) -> int:
        print(f"slipstream get: {_one_line(message)}", file=sys.stderr)
        return status

    token = args.token or os.environ.get("SLIPSTREAM_TOKEN")
    if not token:
        return fail("no token: pass --token or set SLIPSTREAM_TOKEN", 2)
    name = PurePosixPath(args.filename).name
    dest: Path = args.output if args.output is not None else Path(name)
    if dest.is_dir():
        dest = dest / name
    # Trio raises Ctrl-C wherever the code is (outside its own protected parts), so a
    # coroutine can be made and dropped unawaited (an ``async with``'s exit); Python then
    # warns as it is collected.  The transfer resumes on the next run: only the one line.
    warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
    try:
        saved = _download(args, token, name, dest)
    except BaseException as exc:
        # Ctrl-C arrives as a KeyboardInterrupt in whichever task runs at that moment;
        # from a background task it comes out of trio.run inside an exception group.
        if interrupted(exc):
            return fail("interrupted; run the same command again to resume", 130)
        found = leaves(exc)
        if not all(isinstance(leaf, Exception) for leaf in found):
            raise  # SystemExit and the like are not failures of the download
        first = found[0]
        if isinstance(first, OSError):
            return fail(f"{first.filename or dest}: {first.strerror or first}")
        return fail(str(first) or type(first).__name__)  # every other failure: one line
    print(f"saved {saved} ({saved.stat().st_size} bytes, SHA-256 verified)")
    return 0


def _download(args: argparse.Namespace, token: str, name: str, dest: Path) -> Path:
    """Run the download with a progress bar (on a terminal); return the saved path."""
    import trio
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from slipstream.client import download_file

    console = Console(stderr=True)
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task: list[TaskID] = []

    def progress(done: int, total: int) -> None:
        if not task:  # created on the first report, so a resumed prefix is not "speed"
            task.append(bar.add_task(name, total=total, completed=done))
        bar.update(task[0], completed=done, total=total)

    with bar:
        return trio.run(
            partial(
                download_file,
                args.server,
                token,
                args.filename,
                dest,
                application=args.application,
                progress=progress,
                resume=not args.no_resume,
                timeout=args.timeout,
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``slipstream`` command and return its exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, getattr(args, "log_level", "warning").upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "digest":
            return digest_files(args.files, as_json=args.json)
        if args.command == "get":
            return get_file(args)
        if args.command == "state":
            return state_command(args)
        return serve_command(args)
    except KeyboardInterrupt:
        print(f"slipstream {args.command}: interrupted", file=sys.stderr)
        return 130


def entry() -> int:
    """The process entry point (console script, ``python -m slipstream``).

    Once :func:`main` has returned, the work is done and the process only exits: a
    Ctrl-C in that moment is ignored rather than turned into a traceback (or a kill by
    the signal once the interpreter has dropped its handler).
    """
    try:
        status = main()
    except KeyboardInterrupt:
        print("slipstream: interrupted", file=sys.stderr)
        status = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return status

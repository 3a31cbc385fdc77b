"""The ``slipstream`` command (also ``python -m slipstream``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import trio

from .app import Server
from .config import DEFAULT_CONTENT_DIGEST_MAX, DEFAULT_MAX_DOWNLOAD_SIZE, Config

log = logging.getLogger("slipstream.server")


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their flags."""
    parser = argparse.ArgumentParser(prog="slipstream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the file server")
    serve.add_argument("--root", type=Path, default=Path("data"), help="directory to serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--state-dir", type=Path, default=None, help="state (default <root>/.slipstream)"
    )
    serve.add_argument(
        "--token",
        action="append",
        default=[],
        help="access token (repeatable; also $SLIPSTREAM_TOKEN; generated if none)",
    )
    serve.add_argument(
        "--max-download-size",
        type=int,
        default=DEFAULT_MAX_DOWNLOAD_SIZE,
        help="size cap in bytes for /api/download (0 = no limit)",
    )
    serve.add_argument(
        "--content-digest-max",
        type=int,
        default=DEFAULT_CONTENT_DIGEST_MAX,
        help="largest 206 body that gets a Content-Digest, in bytes (0 = any size)",
    )
    serve.add_argument("--secret", help="HMAC key for presigned URLs (also $SLIPSTREAM_SECRET)")
    serve.add_argument(
        "--previous-secret",
        action="append",
        default=[],
        help="an older key that still verifies presigned URLs (repeatable)",
    )
    serve.add_argument("--public-url", help="base of issued URLs (default http://HOST:PORT)")
    serve.add_argument("--internal-url", help="base of internal_url in drive replies")
    serve.add_argument("--cdn-url", help="base of cdn_url in drive replies")
    serve.add_argument(
        "--application",
        action="append",
        default=[],
        type=_named_dir,
        metavar="NAME=DIR",
        help="a websocket application folder (repeatable)",
    )
    serve.add_argument(
        "--drive",
        action="append",
        default=[],
        type=_named_dir,
        metavar="ID=DIR",
        help='a drive-API drive folder (repeatable; drive "1" is --root unless given)',
    )
    serve.add_argument("--ws-rate-limit", type=int, default=100, help="packets per window per IP")
    serve.add_argument("--ws-rate-window", type=float, default=10.0, help="seconds")
    serve.add_argument("--ws-block-seconds", type=float, default=60.0, help="block after the limit")
    downloads = serve.add_argument_group("remote downloads (seed 001)")
    downloads.add_argument(
        "--allow-download", action="store_true", help="allow GET /{dir}?download=URL jobs"
    )
    downloads.add_argument(
        "--allow-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="only these domains (and subdomains) may be fetched (repeatable)",
    )
    downloads.add_argument(
        "--block-domain", action="append", default=[], metavar="DOMAIN", help="repeatable"
    )
    downloads.add_argument(
        "--allow-private-networks",
        action="store_true",
        help="let fetches reach loopback, private, link-local ... addresses",
    )
    downloads.add_argument("--history-limit", type=int, default=10_000, help="finished jobs kept")
    downloads.add_argument(
        "--max-fetch-size", type=int, default=0, help="bytes per job (0 = no limit)"
    )
    downloads.add_argument("--max-concurrent-downloads", type=int, default=8)
    downloads.add_argument(
        "--download-timeout", type=float, default=300.0, help="default seconds per job"
    )
    zips = serve.add_argument_group("zip-as-a-service (seed 004)")
    zips.add_argument(
        "--zip-allow-prefix",
        action="append",
        default=[],
        metavar="PREFIX",
        help="URI prefix POST /download may fetch (repeatable; none = every URI refused)",
    )
    zips.add_argument(
        "--zip-ttl", type=float, default=7 * 86_400.0, help="longest life of a stream URL, s"
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--no-access-log", action="store_true", help="do not log one line per request"
    )
    digest = commands.add_parser("digest", help="print every checksum of files")
    digest.add_argument("files", nargs="+", type=Path, metavar="FILE")
    digest.add_argument("--json", action="store_true", help="one JSON object per file")
    get = commands.add_parser("get", help="download a file over the websocket protocol")
    get.add_argument("filename", metavar="FILENAME", help="path of the file in the application")
    get.add_argument("--server", required=True, help="websocket URL, e.g. ws://HOST:PORT/ws")
    get.add_argument("--token", default=None, help="access token (also $SLIPSTREAM_TOKEN)")
    get.add_argument("--application", default=None, help="application name (default: root)")
    get.add_argument("-o", "--output", type=Path, default=None, help="file or directory to write")
    get.add_argument(
        "--no-resume", action="store_true", help="discard a partial download and start over"
    )
    get.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server")
    return parser


def _named_dir(value: str) -> tuple[str, Path]:
    """``NAME=DIR`` -> (NAME, DIR) for --application and --drive."""
    name, sep, directory = value.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {value!r}")
    return name, Path(directory)


def config_from_args(args: argparse.Namespace) -> Config:
    """A Config from parsed ``serve`` flags plus the environment."""
    tokens = list(args.token)
    env_token = os.environ.get("SLIPSTREAM_TOKEN")
    if env_token:
        tokens.append(env_token)
    if args.max_download_size < 0 or args.content_digest_max < 0:
        raise SystemExit("--max-download-size and --content-digest-max must be >= 0")
    if args.max_fetch_size < 0 or args.history_limit < 0 or args.max_concurrent_downloads < 1:
        raise SystemExit(
            "--max-fetch-size and --history-limit must be >= 0, --max-concurrent-downloads >= 1"
        )
    if args.download_timeout <= 0:
        raise SystemExit("--download-timeout must be > 0")
    return Config(
        root=args.root,
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        tokens=tokens,
        max_download_size=args.max_download_size,
        access_log=not args.no_access_log,
        content_digest_max=args.content_digest_max,
        secret=args.secret or os.environ.get("SLIPSTREAM_SECRET") or None,
        previous_secrets=list(args.previous_secret),
        public_url=args.public_url,
        internal_url=args.internal_url,
        cdn_url=args.cdn_url,
        applications=dict(args.application),
        drives=dict(args.drive),
        ws_rate_limit=args.ws_rate_limit,
        ws_rate_window=args.ws_rate_window,
        ws_block_seconds=args.ws_block_seconds,
        allow_download=args.allow_download,
        allow_domains=list(args.allow_domain),
        block_domains=list(args.block_domain),
        allow_private_networks=args.allow_private_networks,
        history_limit=args.history_limit,
        max_fetch_size=args.max_fetch_size,
        max_concurrent_downloads=args.max_concurrent_downloads,
        download_timeout=args.download_timeout,
        zip_allow_prefixes=list(args.zip_allow_prefix),
        zip_ttl=args.zip_ttl,
    )


async def run_server(config: Config) -> None:
    """Serve until SIGINT/SIGTERM, then drain in-flight replies and return."""
    server = Server(config)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.run)
            host = config.host if ":" not in config.host else f"[{config.host}]"
            print(f"slipstream serving {config.root} at http://{host}:{port}/", flush=True)
            print(f"access token: {config.tokens[0]}", flush=True)
            async for signum in signals:
                log.info("received %s, draining", signal.Signals(signum).name)
                server.shutdown()
                break


PROGRESS_MIN_SIZE = 64 * 1024 * 1024
"""Files at least this large get a progress bar (on a terminal) while they are hashed."""


def digest_files(paths: Sequence[Path], *, as_json: bool = False) -> int:
    """``slipstream digest``: hash each file once with every algorithm and print the values."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from slipstream.digests import hash_path

    errors = Console(stderr=True)
    status = 0
    for path in paths:
        try:
            size = path.stat().st_size
            if size >= PROGRESS_MIN_SIZE and errors.is_terminal:
                with Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    console=errors,
                    transient=True,
                ) as progress:
                    task = progress.add_task(path.name, total=size)
                    digests = hash_path(path, partial(progress.advance, task))
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


def get_file(args: argparse.Namespace) -> int:
    """``slipstream get``: download, resume and verify one file; one line on any error."""
    from pathlib import PurePosixPath

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

    def fail(message: str, status: int = 1) -> int:
        print(f"slipstream get: {' '.join(message.split())}", file=sys.stderr)
        return status

    token = args.token or os.environ.get("SLIPSTREAM_TOKEN")
    if not token:
        return fail("no token: pass --token or set SLIPSTREAM_TOKEN", 2)
    name = PurePosixPath(args.filename).name
    dest: Path = args.output if args.output is not None else Path(name)
    if dest.is_dir():
        dest = dest / name
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

    try:
        with bar:
            saved = trio.run(
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
    except KeyboardInterrupt:
        return fail("interrupted; run the same command again to resume", 130)
    except OSError as exc:
        return fail(f"{exc.filename or dest}: {exc.strerror or exc}")
    except Exception as exc:  # every other failure is one line too
        return fail(str(exc) or type(exc).__name__)
    print(f"saved {saved} ({saved.stat().st_size} bytes, SHA-256 verified)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slipstream`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, getattr(args, "log_level", "warning").upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "digest":
        return digest_files(args.files, as_json=args.json)
    if args.command == "get":
        return get_file(args)
    if args.command == "serve":
        config = config_from_args(args)
        try:
            config.prepare()
        except ValueError as exc:
            print(f"slipstream: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"slipstream: cannot prepare {config.root}: {exc}", file=sys.stderr)
            return 1
        try:
            trio.run(run_server, config)
        except OSError as exc:
            print(f"slipstream: {exc}", file=sys.stderr)
            return 1
        return 0
    return 2  # pragma: no cover - argparse enforces a command

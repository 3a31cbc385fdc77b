"""The ``slipstream`` command (also ``python -m slipstream``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from .app import Server
from .config import DEFAULT_MAX_DOWNLOAD_SIZE, Config

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
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--no-access-log", action="store_true", help="do not log one line per request"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """A Config from parsed ``serve`` flags plus the environment."""
    tokens = list(args.token)
    env_token = os.environ.get("SLIPSTREAM_TOKEN")
    if env_token:
        tokens.append(env_token)
    if args.max_download_size < 0:
        raise SystemExit("--max-download-size must be >= 0")
    return Config(
        root=args.root,
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        tokens=tokens,
        max_download_size=args.max_download_size,
        access_log=not args.no_access_log,
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slipstream`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        config = config_from_args(args)
        try:
            config.prepare()
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

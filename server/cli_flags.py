"""The flags of the ``slipstream`` command: the parser, value types, and flags -> Config.

Every flag is checked when it is parsed, so a bad value costs one line on stderr and exit
status 2 before anything is created or bound; :meth:`Config.validate` then checks what
depends on several flags (a wildcard ``--host`` needs ``--public-url``).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from importlib import metadata
from pathlib import Path
from typing import NoReturn

from slipstream.numeric import INT64_MAX, InvalidNumber, parse_uint

from .cli_state import add_state_parser
from .config import DEFAULT_CONTENT_DIGEST_MAX, DEFAULT_MAX_DOWNLOAD_SIZE, Config, base_url_problem

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's multiprocess directory (see :mod:`slipstream.server.metrics`)."""

DESCRIPTION = """\
Slipstream: a resumable, checksummed file-delivery server.

  slipstream serve   serve a directory over HTTP and websocket (also: python -m slipstream serve)
  slipstream get     download a file over the websocket protocol, resuming and verifying it
  slipstream digest  print every checksum of files from one read pass

Run "slipstream COMMAND --help" for the flags of a command.
"""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows every default worth showing (not None, not False, not empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or (isinstance(default, list) and not default)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


# --- value types (each raises ArgumentTypeError with the reason) ---------------------


def port(text: str) -> int:
    """A TCP port, 0..65535 (0 lets the system pick a free one)."""
    try:
        return parse_uint(text, maximum=65535)
    except InvalidNumber:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535, got {text!r}") from None


def byte_count(text: str) -> int:
    """A number of bytes, >= 0."""
    try:
        return parse_uint(text)
    except InvalidNumber:
        raise argparse.ArgumentTypeError(
            f"expected a number of bytes (0..{INT64_MAX}), got {text!r}"
        ) from None


def count(text: str) -> int:
    """A whole number >= 0."""
    try:
        return parse_uint(text)
    except InvalidNumber:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None


def positive_count(text: str) -> int:
    """A whole number >= 1."""
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


MAX_WORKERS = 1024
"""Most worker processes ``--workers`` accepts (a typo guard, not a tuning limit)."""


def workers(text: str) -> int:
    """``--workers``: a whole number 1..MAX_WORKERS, or ``auto`` (the CPUs this process
    may run on, ``os.sched_getaffinity``: a container's or ``taskset``'s CPU set, not
    the machine's)."""
    if text == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        value = parse_uint(text, maximum=MAX_WORKERS)
    except InvalidNumber:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected auto or a whole number 1..{MAX_WORKERS}, got {text!r}"
        )
    return value


_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


def seconds(text: str) -> float:
    """A duration in seconds, > 0 (a plain decimal number: no sign, exponent, inf or nan)."""
    value = non_negative_seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def non_negative_seconds(text: str) -> float:
    """A duration in seconds, >= 0."""
    if len(text) > 32 or not _DECIMAL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return value


def base_url(text: str) -> str:
    """An absolute http(s) URL to put in front of issued paths."""
    problem = base_url_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


def non_empty(text: str) -> str:
    """Any text but the empty string (tokens, keys, names)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def named_dir(value: str) -> tuple[str, Path]:
    """``NAME=DIR`` -> (NAME, DIR) for --application and --drive."""
    name, sep, directory = value.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {value!r}")
    return name, Path(directory)


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for an IPv6 address) -> (HOST, PORT)."""
    host, sep, number = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or (":" in host and not text.startswith("[")):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (or [IPv6]:PORT), got {text!r}")
    return host, port(number)


def version() -> str:
    """The installed distribution's version."""
    try:
        return metadata.version("slipstream")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        return "unknown (not installed)"


# --- the parser ----------------------------------------------------------------------


def build_parser() -> Parser:
    """All subcommands and their flags."""
    parser = Parser(prog="slipstream", description=DESCRIPTION, formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (each has --help)"
    )
    _add_serve(commands)
    _add_digest(commands)
    _add_get(commands)
    add_state_parser(commands, Formatter)
    return parser


def _add_serve(commands: argparse._SubParsersAction[Parser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a directory over HTTP and websocket",
        description="Serve a directory over HTTP and websocket until Ctrl-C or SIGTERM.",
        formatter_class=Formatter,
    )
    add = serve.add_argument
    add("--root", type=Path, default=Path("data"), metavar="DIR", help="directory to serve")
    add(
        "--host",
        default="127.0.0.1",
        help="address or name to listen on; a wildcard (0.0.0.0, ::) needs --public-url",
    )
    add("--port", type=port, default=8000, help="TCP port (0 picks a free one)")
    add(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="server state: token, secret, databases (default: ROOT/.slipstream)",
    )
    add(
        "--token",
        action="append",
        default=[],
        type=non_empty,
        help="access token, repeatable; also $SLIPSTREAM_TOKEN "
        "(default: generated once, kept in the state dir)",
    )
    add(
        "--max-download-size",
        type=byte_count,
        default=DEFAULT_MAX_DOWNLOAD_SIZE,
        metavar="BYTES",
        help="size cap of /api/download, 0 = no limit",
    )
    add(
        "--content-digest-max",
        type=byte_count,
        default=DEFAULT_CONTENT_DIGEST_MAX,
        metavar="BYTES",
        help="largest 206 body that gets a Content-Digest, 0 = any size",
    )
    add(
        "--open-files",
        type=count,
        default=256,
        metavar="N",
        help="descriptors of served files kept open, reused and revalidated on each use; 0 = none",
    )
    add(
        "--secret",
        type=non_empty,
        metavar="KEY",
        help="HMAC key of presigned URLs; also $SLIPSTREAM_SECRET "
        "(default: generated once, kept in the state dir)",
    )
    add(
        "--previous-secret",
        action="append",
        default=[],
        type=non_empty,
        metavar="KEY",
        help="an older key that still verifies presigned URLs, repeatable",
    )
    add(
        "--public-url",
        type=base_url,
        metavar="URL",
        help="absolute http(s) base of issued URLs and of the zip service's 303 Location "
        "(default: http://HOST:PORT; required with a wildcard --host)",
    )
    add(
        "--internal-url",
        type=base_url,
        metavar="URL",
        help="base of internal_url in drive replies (default: the public URL)",
    )
    add(
        "--cdn-url",
        type=base_url,
        metavar="URL",
        help="base of cdn_url in drive replies (default: the public URL)",
    )
    add(
        "--application",
        action="append",
        default=[],
        type=named_dir,
        metavar="NAME=DIR",
        help="a websocket application folder, repeatable (without one, Initialize uses ROOT)",
    )
    add(
        "--drive",
        action="append",
        default=[],
        type=named_dir,
        metavar="ID=DIR",
        help='a drive-API drive folder, repeatable (drive "1" is ROOT unless given)',
    )
    add(
        "--ws-rate-limit",
        type=count,
        default=100,
        metavar="N",
        help="websocket packets one IP may send per window, 0 = no limit",
    )
    add(
        "--ws-rate-window",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="the window of --ws-rate-limit",
    )
    add(
        "--ws-block-seconds",
        type=non_negative_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how long an IP over the limit stays blocked",
    )
    add(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="info logs one access line per request",
    )
    add("--no-access-log", action="store_true", help="do not log one line per request")
    add(
        "--metrics",
        action="store_true",
        help="serve Prometheus metrics at GET /metrics on the main port (Bearer token)",
    )
    add(
        "--metrics-bind",
        type=host_port,
        metavar="HOST:PORT",
        help="serve GET /metrics (token-free) on this separate address, e.g. 127.0.0.1:9464",
    )
    add(
        "--workers",
        type=workers,
        default=1,
        metavar="N|auto",
        help="worker processes serving the port (auto: one per CPU this process may use)",
    )
    downloads = serve.add_argument_group("remote downloads (GET /DIR?download=URL)")
    add = downloads.add_argument
    add("--allow-download", action="store_true", help="allow GET /{dir}?download=URL jobs")
    add(
        "--allow-domain",
        action="append",
        default=[],
        type=non_empty,
        metavar="DOMAIN",
        help="fetch only from these domains and their subdomains, repeatable",
    )
    add(
        "--block-domain",
        action="append",
        default=[],
        type=non_empty,
        metavar="DOMAIN",
        help="never fetch from this domain or its subdomains, repeatable",
    )
    add(
        "--allow-private-networks",
        action="store_true",
        help="let fetches reach loopback, private, link-local ... addresses",
    )
    add(
        "--history-limit",
        type=count,
        default=10_000,
        metavar="N",
        help="finished jobs kept (the oldest are trimmed)",
    )
    add(
        "--max-fetch-size",
        type=byte_count,
        default=0,
        metavar="BYTES",
        help="cap per remote download, 0 = no limit",
    )
    add(
        "--max-concurrent-downloads",
        type=positive_count,
        default=8,
        metavar="N",
        help="jobs running at once; the rest wait as queued",
    )
    add(
        "--download-timeout",
        type=seconds,
        default=300.0,
        metavar="SECONDS",
        help="whole-job timeout when a request gives none",
    )
    zips = serve.add_argument_group("zip-as-a-service (POST /download)")
    zips.add_argument(
        "--zip-allow-prefix",
        action="append",
        default=[],
        type=non_empty,
        metavar="PREFIX",
        help="URI prefix POST /download may fetch, repeatable (none = every URI refused)",
    )
    zips.add_argument(
        "--zip-ttl",
        type=seconds,
        default=7 * 86_400.0,
        metavar="SECONDS",
        help="longest life of a /stream/<uuid> URL",
    )


def _add_digest(commands: argparse._SubParsersAction[Parser]) -> None:
    digest = commands.add_parser(
        "digest",
        help="print every checksum of files",
        description="Hash each file once with every algorithm and print the values.",
        formatter_class=Formatter,
    )
    digest.add_argument("files", nargs="+", type=Path, metavar="FILE", help="regular files to hash")
    digest.add_argument("--json", action="store_true", help="print one JSON object per file")


def _add_get(commands: argparse._SubParsersAction[Parser]) -> None:
    get = commands.add_parser(
        "get",
        help="download a file over the websocket protocol",
        description="Download one file, resuming a partial download and verifying its "
        "SHA-256 before it gets its name.",
        formatter_class=Formatter,
    )
    add = get.add_argument
    add("filename", metavar="FILENAME", help="path of the file in the application")
    add(
        "--server",
        required=True,
        metavar="URL",
        help="websocket URL of the server, e.g. ws://127.0.0.1:8000/ws",
    )
    add(
        "--token",
        type=non_empty,
        default=None,
        help="access token (default: $SLIPSTREAM_TOKEN)",
    )
    add(
        "--application",
        type=non_empty,
        default=None,
        metavar="NAME",
        help="application to download from (default: the server's root)",
    )
    add(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="PATH",
        help="file or directory to write (default: FILENAME's last part, here)",
    )
    add("--no-resume", action="store_true", help="discard a partial download and start over")
    add(
        "--timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the server or the next bytes",
    )


# --- flags -> Config -----------------------------------------------------------------


def config_from_args(args: argparse.Namespace) -> Config:
    """A Config from parsed ``serve`` flags plus the environment (not yet validated)."""
    tokens = list(args.token)
    env_token = os.environ.get("SLIPSTREAM_TOKEN")
    if env_token:
        tokens.append(env_token)
    return Config(
        root=args.root,
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        tokens=tokens,
        max_download_size=args.max_download_size,
        access_log=not args.no_access_log,
        content_digest_max=args.content_digest_max,
        open_files=args.open_files,
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
        metrics=args.metrics,
        metrics_bind=args.metrics_bind,
        # prometheus_client's multiprocess mode (set for every worker): add up their files
        metrics_dir=Path(multiproc) if (multiproc := os.environ.get(MULTIPROC_ENV)) else None,
    )

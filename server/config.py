"""Server settings: one small dataclass, filled from CLI flags and the environment."""

from __future__ import annotations

import ipaddress
import math
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from slipstream.privatefiles import private_dir
from slipstream.statefiles import load_or_create_secret, state_lock
from slipstream.zip.allow import AllowList

DEFAULT_MAX_DOWNLOAD_SIZE = 52_428_800  # seed 002: "max size is 50 MB"
DEFAULT_CONTENT_DIGEST_MAX = 64 * 1024 * 1024
"""Largest 206 body that gets a ``Content-Digest`` by default (it is hashed before sending)."""


class ConfigError(ValueError):
    """A setting that cannot work; the message names the setting and says why."""


@dataclass(slots=True)
class Limits:
    """Connection limits; every wait in the HTTP layer has one of these as its deadline."""

    max_head_bytes: int = 64 * 1024
    max_header_count: int = 100
    max_body_bytes: int = 1024 * 1024
    head_timeout: float = 10.0
    """Seconds from the first byte of a request head until the whole head has arrived."""
    idle_timeout: float = 60.0
    """Seconds an idle keep-alive connection may wait for its next request."""
    send_timeout: float = 30.0
    """Seconds a client may leave our writes unread before it is dropped."""
    body_timeout: float = 30.0
    max_connections: int = 10_000
    drain_timeout: float = 10.0
    """On shutdown, seconds in-flight responses get to finish."""


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """Which of ``count`` worker processes sharing one port and state dir this one is."""

    index: int
    count: int
    rate_table: int | None = None
    """Descriptor of the websocket rate table the workers share (see
    :mod:`~slipstream.server.ws_shared_limits`); None: each counts alone."""


@dataclass(slots=True)
class Config:
    """Everything ``serve()`` needs.  Paths are resolved by :meth:`prepare`."""

    root: Path = field(default_factory=lambda: Path("data"))
    host: str = "127.0.0.1"
    port: int = 8000
    state_dir: Path | None = None
    tokens: list[str] = field(default_factory=list)
    max_download_size: int = DEFAULT_MAX_DOWNLOAD_SIZE
    limits: Limits = field(default_factory=Limits)
    access_log: bool = True
    content_digest_max: int = DEFAULT_CONTENT_DIGEST_MAX
    """Largest 206 body that gets a ``Content-Digest`` (hashed before sending); 0 = any."""
    open_files: int = 256
    """Descriptors the open-file cache keeps (see :mod:`slipstream.openfiles`); 0 = none."""
    secret: str | None = None
    """HMAC key for presigned URLs; generated once and kept in the state dir when None."""
    previous_secrets: list[str] = field(default_factory=list)
    """Older keys that still verify (key rotation); never used to sign."""
    public_url: str | None = None
    """Base of issued URLs; None means ``http://HOST:PORT`` with the bound port."""
    internal_url: str | None = None
    """Base of ``internal_url`` in drive replies (``url``'s base when None)."""
    cdn_url: str | None = None
    """Base of ``cdn_url`` in drive replies (``url``'s base when None)."""
    applications: dict[str, Path] = field(default_factory=dict)
    """Websocket applications: name -> folder.  Without a name, Initialize uses the root."""
    drives: dict[str, Path] = field(default_factory=dict)
    """Drive-API drives: id -> folder.  Drive "1" is the root unless given here."""
    ws_rate_limit: int = 100
    """Websocket packets one client IP may send per ``ws_rate_window`` before it is blocked."""
    ws_rate_window: float = 10.0
    ws_block_seconds: float = 60.0
    allow_download: bool = False
    """Allow ``GET /{dir}?download=URL`` jobs (seed 001's ``--allow-download``)."""
    allow_domains: list[str] = field(default_factory=list)
    """When not empty, remote downloads may reach only these domains (and subdomains)."""
    block_domains: list[str] = field(default_factory=list)
    allow_private_networks: bool = False
    """Lift the address rule of the network policy (loopback, RFC 1918, link-local ...)."""
    history_limit: int = 10_000
    max_fetch_size: int = 0
    """Largest remote download in bytes (0 = no limit)."""
    max_concurrent_downloads: int = 8
    download_timeout: float = 300.0
    """Default whole-job timeout of a remote download, in seconds."""
    zip_allow_prefixes: list[str] = field(default_factory=list)
    """URI prefixes the zip service may fetch (seed 004's allow list); none = nothing."""
    zip_ttl: float = 7 * 86_400.0
    """Seconds a zip stream URL lives at most (it expires sooner once fully delivered)."""
    worker: WorkerSlot | None = None
    """Set in each process of ``slipstream serve --workers N`` (None: a single process)."""
    metrics: bool = False
    """Serve ``GET /metrics`` (Prometheus, Bearer auth) on the main port."""
    metrics_bind: tuple[str, int] | None = None
    """``(host, port)`` of a separate, token-free listener serving only ``/metrics``."""
    metrics_dir: Path | None = None
    """Add up the metrics of every process writing into this directory (prometheus_client's
    multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` must name it when the process starts)."""

    @property
    def metrics_enabled(self) -> bool:
        """Whether the server counts anything (``/metrics`` on some port)."""
        return self.metrics or self.metrics_bind is not None

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a setting that cannot work (before anything binds).

        Ranges of the numbers, the URL bases (absolute ``http``/``https``), a root or state
        dir that exists but is not a directory, a wildcard ``host`` without a
        ``public_url`` (issued URLs would point at ``http://0.0.0.0:PORT``), and the zip
        allow prefixes.
        """
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is not in 0..65535")
        if self.metrics_bind is not None and not 0 <= self.metrics_bind[1] <= 65535:
            raise ConfigError(f"metrics port {self.metrics_bind[1]} is not in 0..65535")
        if self.metrics_dir is not None and self.metrics_enabled:
            from .metrics import multiprocess_problem  # prometheus_client only when used

            problem = multiprocess_problem(Path(self.metrics_dir))
            if problem is not None:
                raise ConfigError(f"metrics dir {problem}")
        for name in ("public_url", "internal_url", "cdn_url"):
            value = getattr(self, name)
            problem = None if value is None else base_url_problem(value)
            if problem is not None:
                raise ConfigError(f"{name} {value!r} {problem}")
        if self.public_url is None and is_wildcard_host(self.host):
            raise ConfigError(wildcard_message(self.host or "*"))
        for name in ("max_download_size", "content_digest_max", "max_fetch_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if self.history_limit < 0 or self.ws_rate_limit < 0:
            raise ConfigError("history_limit and ws_rate_limit must be >= 0")
        if self.max_concurrent_downloads < 1:
            raise ConfigError("max_concurrent_downloads must be >= 1")
        for name in ("ws_rate_window", "download_timeout", "zip_ttl"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a number of seconds > 0")
        if not (math.isfinite(self.ws_block_seconds) and self.ws_block_seconds >= 0):
            raise ConfigError("ws_block_seconds must be a number of seconds >= 0")
        for name, path in (("root", self.root), ("state dir", self.state_dir)):
            resolved = None if path is None else Path(path).expanduser()
            if resolved is not None and resolved.exists() and not resolved.is_dir():
                raise ConfigError(f"{name} {path} is not a directory")
        try:
            AllowList(self.zip_allow_prefixes)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def prepare(self) -> None:
        """Create the root and state dir, resolve paths, make sure a token and a secret exist.

        Runs :meth:`validate` first (raises :class:`ConfigError`, a ``ValueError``).
        """
        self.validate()
        self.root = Path(self.root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir = Path(self.state_dir or self.root / ".slipstream").expanduser().resolve()
        private_dir(self.state_dir)  # 0700 and its files 0600, also when it already existed
        if not self.tokens or not self.secret:
            # Several processes of one server (--workers) may start at once: one creates
            # each value, the others read it.
            with state_lock(self.state_dir):
                if not self.tokens:
                    self.tokens = [load_or_create(self.state_dir, "token")]
                if not self.secret:
                    self.secret = load_or_create(self.state_dir, "secret")
        self.applications = {n: _existing_dir(p) for n, p in self.applications.items()}
        self.drives = {n: _existing_dir(p) for n, p in self.drives.items()}
        self.drives.setdefault("1", self.root)
        for name in [*self.applications, *self.drives]:
            if not _NAME.fullmatch(name):
                raise ValueError(f"invalid application or drive name {name!r}")

    @property
    def state_path(self) -> Path:
        """The prepared state directory (never served)."""
        if self.state_dir is None:
            raise RuntimeError("Config.prepare() has not run")
        return Path(self.state_dir)


_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def base_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the base of issued URLs, or None when it can.

    A base is an absolute ``http``/``https`` URL with a host, optionally a path prefix,
    and no credentials, query or fragment (those would end up inside every issued URL).
    """
    if not url or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return "must be an absolute http:// or https:// URL without blanks"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query or fragment"
    return None


def is_wildcard_host(host: str) -> bool:
    """True for a listening address that means "every interface".

    ``""``, ``*``, ``0.0.0.0`` in any form the resolver accepts (``0``, ``0x0``,
    ``0.0``), ``::`` in any spelling, and ``::ffff:0.0.0.0``.
    """
    host = host.strip()
    if host in ("", "*"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped.is_unspecified
        return address.is_unspecified
    try:  # the short IPv4 forms the resolver also accepts: 0, 0x0, 0.0, 00
        return socket.inet_aton(host) == b"\0\0\0\0"
    except OSError:
        return False


def wildcard_message(host: str) -> str:
    """The refusal for a wildcard bind without a public URL (one line)."""
    return (
        f"host {host} listens on every interface, so issued URLs need a base clients can "
        "reach: set the public URL (--public-url http://files.example.com:8000)"
    )


def _existing_dir(path: Path) -> Path:
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_dir():
        raise ValueError(f"{path} is not a directory")
    return resolved


def load_or_create(state_dir: Path, name: str) -> str:
    """A random value persisted as ``state_dir/name`` (the token, the URL secret),
    generated on first start; a damaged file raises
    :class:`~slipstream.statefiles.StateDamaged`."""
    return load_or_create_secret(state_dir / name, lambda: secrets.token_urlsafe(24))

"""Server settings: one small dataclass, filled from CLI flags and the environment."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from slipstream.privatefiles import private_dir
from slipstream.zipallow import AllowList

DEFAULT_MAX_DOWNLOAD_SIZE = 52_428_800  # seed 002: "max size is 50 MB"
DEFAULT_CONTENT_DIGEST_MAX = 64 * 1024 * 1024
"""Largest 206 body that gets a ``Content-Digest`` by default (it is hashed before sending)."""


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

    def prepare(self) -> None:
        """Create the root and state dir, resolve paths, make sure a token and a secret exist.

        ``ValueError`` (one line) for an invalid zip allow prefix or application name.
        """
        AllowList(self.zip_allow_prefixes)  # refuse a bad --zip-allow-prefix before anything
        self.root = Path(self.root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir = Path(self.state_dir or self.root / ".slipstream").expanduser().resolve()
        private_dir(self.state_dir)  # 0700 and its files 0600, also when it already existed
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


def _existing_dir(path: Path) -> Path:
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_dir():
        raise ValueError(f"{path} is not a directory")
    return resolved


def load_or_create(state_dir: Path, name: str) -> str:
    """A random value persisted as ``state_dir/name`` (the token, the URL secret),
    generated on first start."""
    path = state_dir / name
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if not token:
        token = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
    return token

"""Server settings: one small dataclass, filled from CLI flags and the environment."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

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

    def prepare(self) -> None:
        """Create the root and state dir, resolve paths, and make sure a token exists."""
        self.root = Path(self.root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir = Path(self.state_dir or self.root / ".slipstream").expanduser().resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.tokens:
            self.tokens = [load_or_create_token(self.state_dir)]

    @property
    def state_path(self) -> Path:
        """The prepared state directory (never served)."""
        if self.state_dir is None:
            raise RuntimeError("Config.prepare() has not run")
        return Path(self.state_dir)


def load_or_create_token(state_dir: Path) -> str:
    """The access token persisted in the state dir, generated on first start."""
    path = state_dir / "token"
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

"""The websocket surface as a service: what every ``/ws`` session shares.

A :class:`WsHub` is built once per server by :func:`slipstream.server.services.open_app`
and holds what the websocket protocol uses (the config, the file spaces, the digest
cache, the download jobs, the URL issuer), its tunables (:class:`WsOptions`), the
per-IP rate limiter and the open sessions (so a draining server closes them at once).
The protocol itself is :mod:`slipstream.server.ws`, imported when the first client
asks for a websocket (it imports trio-websocket).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import trio

from slipstream.digests import DigestCache
from slipstream.jobs.runner import Jobs
from slipstream.storage import LocalStorage

from .config import Config
from .http import Request
from .routes.presigned import UrlIssuer
from .ws_limits import Limiter, RateLimiter
from .ws_shared_limits import SharedRateLimiter

__all__ = ["MAX_MESSAGE_SIZE", "WsHub", "WsOptions"]

MAX_MESSAGE_SIZE = 64 * 1024


@dataclass(slots=True)
class WsOptions:
    """Tunables of the websocket protocol (defaults suit production; tests shrink them)."""

    init_timeout: float = 30.0
    """Seconds a connection has to complete an Initialize (else closed, NOT_INITIALIZED)."""
    idle_timeout: float = 300.0
    """Seconds an initialized connection may stay silent with nothing in flight."""
    handshake_timeout: float = 10.0
    """Seconds for the upgrade handshake (the server's ``head_timeout``)."""
    close_timeout: float = 2.0
    """Seconds we wait for the client to answer our close frame."""
    send_timeout: float = 30.0
    """Seconds a client may leave a reply unread before the connection is dropped."""
    request_timeout: float = 300.0
    """Seconds one type-7 request may take (hashing a cold file); then status 6."""
    url_ttl: int = 900
    """Lifetime of issued URLs, seconds."""
    max_in_flight: int = 32
    """Type-7 requests one connection may have running; further packets wait unread."""
    message_queue_size: int = 4
    max_message_size: int = MAX_MESSAGE_SIZE


class Stoppable(Protocol):
    """An open session, as the hub sees it."""

    def stop(self) -> None:
        """End the session now."""


@dataclass(slots=True, eq=False)
class WsHub:
    """Websocket state shared by every connection of one server.

    ``config`` is read per packet (the tokens may change while the server runs).
    """

    config: Config
    spaces: Mapping[str, LocalStorage]
    digests: DigestCache
    jobs: Jobs
    urls: UrlIssuer
    limiter: Limiter
    options: WsOptions = field(default_factory=WsOptions)
    clock: Callable[[], float] = trio.current_time
    """Seconds now, as the rate limiter counts them (a test may put a fake clock here)."""
    connections: int = 0
    sessions: set[Stoppable] = field(default_factory=set)
    """Open sessions, so a draining server can close them at once (1001)."""

    @classmethod
    def for_config(
        cls,
        config: Config,
        *,
        spaces: Mapping[str, LocalStorage],
        digests: DigestCache,
        jobs: Jobs,
        urls: UrlIssuer,
    ) -> WsHub:
        """A hub with the rate limit and timeouts ``config`` sets."""
        limits = config.limits
        options = WsOptions(send_timeout=limits.send_timeout, handshake_timeout=limits.head_timeout)
        rates = (config.ws_rate_limit, config.ws_rate_window, config.ws_block_seconds)
        table = config.worker.rate_table if config.worker is not None else None
        if table is not None:  # one count for all the workers, on the system-wide clock
            shared = SharedRateLimiter(table, *rates)
            return cls(config, spaces, digests, jobs, urls, shared, options, clock=time.monotonic)
        return cls(config, spaces, digests, jobs, urls, RateLimiter(*rates), options)

    async def serve(self, stream: trio.abc.HalfCloseableStream, request: Request) -> None:
        """Take over a connection that asked for a websocket at ``/ws``."""
        from .ws import serve_websocket  # imports trio_websocket only when a client asks

        await serve_websocket(self, stream, request)

    def close_all(self) -> None:
        """Server shutdown: end every open session now; each says 1001 "server shutting down"."""
        for session in list(self.sessions):
            session.stop()

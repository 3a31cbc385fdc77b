"""The server: listens, then runs the services (:func:`~.services.open_app`) and one
:class:`HTTPConnection` per socket until shutdown, and drains.

Embedding::

    config = Config(root=Path("files"), port=0, tokens=["secret"])
    async with trio.open_nursery() as nursery:
        port = await nursery.start(slipstream.server.serve, config)
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Sequence
from functools import partial

import trio

from .config import Config, ConfigError, is_wildcard_host, wildcard_message
from .connection import HTTPConnection, IdleScopes
from .errors import status_response
from .router import Router
from .services import App, Services, open_app

__all__ = ["App", "ListenError", "Server", "open_listeners", "serve"]

log = logging.getLogger("slipstream.server")


class Server:
    """Listens, accepts, runs one :class:`HTTPConnection` per socket, drains on shutdown.

    ``config`` is prepared here (state dir, token, secret); ``app`` adds what an
    embedding program plugs in (:class:`~.services.App`).  The services exist while
    :meth:`run` serves (:attr:`services`).
    """

    def __init__(
        self,
        config: Config,
        app: App | None = None,
        *,
        sockets: Sequence[socket.socket] = (),
    ) -> None:
        config.prepare()
        self.config = config
        self.app = app if app is not None else App()
        self.sockets = tuple(sockets)
        """Listening sockets made by the caller (``slipstream serve --workers``); when
        empty, :meth:`run` binds ``config.host``/``config.port`` itself."""
        self.idle = IdleScopes()
        self.connections = 0
        self.port: int | None = None
        self.metrics_port: int | None = None
        """The bound port of the separate ``/metrics`` listener (``Config.metrics_bind``)."""
        self._services: Services | None = None
        self._shutdown = trio.Event()

    @property
    def services(self) -> Services:
        """The running server's services (``RuntimeError`` when it is not running)."""
        if self._services is None:
            raise RuntimeError("the server is not running")
        return self._services

    def shutdown(self) -> None:
        """Stop accepting; idle connections close now, busy ones after their reply."""
        self._shutdown.set()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`shutdown` (then drain for ``drain_timeout``) or cancellation."""
        config = self.config
        if self.sockets:
            listeners = [
                trio.SocketListener(trio.socket.from_stdlib_socket(sock)) for sock in self.sockets
            ]
        else:
            listeners = await open_listeners(config.host, config.port)
        metrics_listeners: list[trio.SocketListener] = []
        try:
            if config.metrics_bind is not None and (
                config.worker is None or config.worker.index == 0
            ):
                # (one listener for every worker: each scrape adds up all of them)
                metrics_listeners = await open_listeners(*config.metrics_bind)
                self.metrics_port = int(metrics_listeners[0].socket.getsockname()[1])
            self.port = int(listeners[0].socket.getsockname()[1])
            public_url = config.public_url or self._bound_url(listeners, self.port)
            async with open_app(config, public_url=public_url, app=self.app) as services:
                self._services = services
                try:
                    await self._serve(services, listeners, metrics_listeners, task_status)
                finally:
                    self._services = None
        finally:
            with trio.CancelScope(shield=True):
                for listener in [*listeners, *metrics_listeners]:
                    await listener.aclose()

    def _bound_url(self, listeners: list[trio.SocketListener], port: int) -> str:
        """``http://HOST:PORT`` of the bound port (no public URL configured)."""
        bound = [str(listener.socket.getsockname()[0]) for listener in listeners]
        if any(is_wildcard_host(address) for address in bound):
            # A name that resolved to a wildcard address (the literal forms are
            # refused by Config.validate before anything binds).
            raise ConfigError(wildcard_message(self.config.host))
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{port}"

    async def _serve(
        self,
        services: Services,
        listeners: list[trio.SocketListener],
        metrics_listeners: list[trio.SocketListener],
        task_status: trio.TaskStatus[int],
    ) -> None:
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as acceptors:
                handle = partial(self._handle, services)
                acceptors.start_soon(
                    partial(trio.serve_listeners, handle, listeners, handler_nursery=handlers)
                )
                if metrics_listeners and services.metrics_router is not None:
                    scrape = partial(self._handle_scrape, services.metrics_router)
                    acceptors.start_soon(
                        partial(
                            trio.serve_listeners,
                            scrape,
                            metrics_listeners,
                            handler_nursery=handlers,
                        )
                    )
                assert self.port is not None
                task_status.started(self.port)
                await self._shutdown.wait()
                acceptors.cancel_scope.cancel()
            self.idle.cancel_all()
            services.ws.close_all()  # open websockets would otherwise hold the drain
            handlers.cancel_scope.deadline = trio.current_time() + self.config.limits.drain_timeout

    async def _handle(self, services: Services, stream: trio.SocketStream) -> None:
        limits = self.config.limits
        if self.connections >= limits.max_connections:
            await _refuse(stream, limits.send_timeout)
            return
        self.connections += 1
        metrics = services.metrics
        if metrics is not None:
            metrics.open_connections.inc()
        try:
            connection = HTTPConnection(
                stream,
                services.router,
                limits,
                self.idle,
                access_log_enabled=self.config.access_log,
                websocket=services.ws.serve,
                errors=services.router.renderer,
                metrics=metrics,
            )
            await connection.run()
        except Exception:
            # A bug must cost one connection, never the server (the nursery would
            # otherwise cancel every other connection with it).
            log.exception("connection handler failed")
        finally:
            self.connections -= 1
            if metrics is not None:
                metrics.open_connections.dec()

    async def _handle_scrape(self, router: Router, stream: trio.SocketStream) -> None:
        """A connection to the separate metrics listener: ``/metrics`` only, no websocket,
        not counted in the metrics themselves (scrapes are not client traffic)."""
        limits = self.config.limits
        if self.connections >= limits.max_connections:
            await _refuse(stream, limits.send_timeout)
            return
        self.connections += 1
        try:
            connection = HTTPConnection(
                stream,
                router,
                limits,
                self.idle,
                access_log_enabled=self.config.access_log,
                errors=router.renderer,
            )
            await connection.run()
        except Exception:
            log.exception("metrics connection handler failed")
        finally:
            self.connections -= 1


async def _refuse(stream: trio.SocketStream, send_timeout: float) -> None:
    """Over the connection cap: one 503 and close, without parsing anything."""
    response = status_response(503, "too many open connections")
    body = response.body if isinstance(response.body, bytes) else b""
    head = (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with trio.move_on_after(send_timeout):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(head + body)
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        await stream.aclose()


class ListenError(OSError):
    """The server could not listen: the port is taken, the host does not resolve or is
    not an address of this machine.  The message is one line naming host and port."""


async def open_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """``trio.open_tcp_listeners`` with its failures as one :class:`ListenError`."""
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        shown = f"[{host}]" if ":" in host else host
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ListenError(exc.errno, f"cannot listen on {shown}:{port}: {reason}") from exc


async def serve(
    config: Config,
    app: App | None = None,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a slipstream server for ``config``; ``nursery.start`` returns the bound port."""
    await Server(config, app).run(task_status=task_status)

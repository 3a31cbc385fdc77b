"""Wiring: the application object (config, storage layers, routes) and the server.

Embedding::

    config = Config(root=Path("files"), port=0, tokens=["secret"])
    async with trio.open_nursery() as nursery:
        port = await nursery.start(slipstream.server.serve, config)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from functools import partial

import trio

from slipstream.digests import DigestCache
from slipstream.fetch import Dialer, Fetcher, Resolver, system_resolver
from slipstream.jobs.runner import Jobs, JobSettings
from slipstream.jobs.store import JobStore
from slipstream.netpolicy import NetworkPolicy
from slipstream.presign import Signer
from slipstream.storage import LocalStorage, MemoryStorage, Storage, StorageRegistry
from slipstream.zip.service import ZipService
from slipstream.zip.state import ZipState

from .config import Config, ConfigError, is_wildcard_host, wildcard_message
from .connection import HTTPConnection, IdleScopes
from .errors import status_response
from .http import Request, Response
from .router import Router
from .routes import api_download, drive, health, local_zip, presigned, remote_downloads, zip_streams

log = logging.getLogger("slipstream.server")


class App:
    """Routes plus the state they share.  Built from a prepared :class:`Config`.

    ``resolver`` and ``dialer`` replace how outbound fetches resolve names and connect
    to checked addresses (see :mod:`slipstream.fetch`; tests use them).
    """

    def __init__(
        self,
        config: Config,
        filesystems: Mapping[str, Storage] | None = None,
        *,
        resolver: Resolver = system_resolver,
        dialer: Dialer | None = None,
    ) -> None:
        config.prepare()
        self.config = config
        layers: dict[str, Storage] = {
            "OsFs": LocalStorage(config.root, hidden=[config.state_path]),
            "MemFs": MemoryStorage(),
        }
        layers.update(filesystems or {})
        self.storages = StorageRegistry(layers, default="OsFs")
        self.digests = DigestCache(config.state_path / "digests.sqlite3")
        hidden = [config.state_path]
        self.spaces: dict[str, LocalStorage] = {"root": LocalStorage(config.root, hidden=hidden)}
        """Folders presigned URLs point into: ``root``, ``app-NAME``, ``drive-ID``."""
        for name, folder in config.applications.items():
            self.spaces[f"app-{name}"] = LocalStorage(folder, hidden=hidden)
        for drive_id, folder in config.drives.items():
            self.spaces[f"drive-{drive_id}"] = LocalStorage(folder, hidden=hidden)
        self.public_url = (config.public_url or "").rstrip("/")
        """Base of issued URLs (set from the bound port by :class:`Server` when not configured)."""
        self.background: trio.Nursery | None = None
        """Where long-running work (background hashing) runs; set by :class:`Server`."""
        self.signer = Signer(config.secret or "", config.previous_secrets)
        self.policy = NetworkPolicy(
            allow_domains=tuple(config.allow_domains),
            block_domains=tuple(config.block_domains),
            allow_private_networks=config.allow_private_networks,
        )
        self._resolver = resolver
        self._dialer = dialer
        self.job_store = JobStore(
            config.state_path / "downloads.sqlite3", history_limit=config.history_limit
        )
        self.jobs: Jobs | None = None
        """Remote-download jobs (seed 001); set while :meth:`run_services` runs."""
        self.zip_state = ZipState(config.state_path / "zip.sqlite3", ttl=config.zip_ttl)
        self.zip_service: ZipService | None = None
        """Zip-as-a-service (seed 004); set while :meth:`run_services` runs."""
        self.router = Router()
        for module in (
            health,
            api_download,
            presigned,
            drive,
            remote_downloads,
            zip_streams,
            local_zip,
        ):
            module.register(self.router, self)

    async def run_services(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run what outlives requests (the remote-download jobs) until cancelled."""
        config = self.config
        settings = JobSettings(
            root=config.root,
            hidden=(config.state_path,),
            max_concurrent=config.max_concurrent_downloads,
            max_fetch_size=config.max_fetch_size or None,
            default_timeout=config.download_timeout,
        )
        fetcher = Fetcher(self.policy, resolver=self._resolver, dialer=self._dialer)
        # The zip service's security is its prefix allow list, set by the administrator
        # (who may well list intranet hosts), so its fetcher has no address rule.
        zip_fetcher = Fetcher(
            NetworkPolicy(allow_private_networks=True), resolver=self._resolver, dialer=self._dialer
        )
        async with fetcher, zip_fetcher, trio.open_nursery() as nursery:
            jobs = Jobs(settings, self.job_store, fetcher, self.digests)
            await nursery.start(partial(jobs.run, resume=config.allow_download))
            self.jobs = jobs
            self.zip_service = ZipService(zip_fetcher, self.zip_state, config.zip_allow_prefixes)
            await nursery.start(self.zip_service.run)  # erases expired manifests' headers
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self.jobs = None
                self.zip_service = None

    async def __call__(self, request: Request) -> Response:
        return await self.router(request)

    def drain(self) -> None:
        """Server shutdown: close what would otherwise hold the drain (open websockets)."""
        from .ws import close_all

        close_all(self)

    async def websocket(self, stream: trio.abc.HalfCloseableStream, request: Request) -> None:
        """Take over a connection that asked for a websocket at ``/ws``."""
        from .ws import serve_websocket  # imports trio_websocket only when a client asks

        await serve_websocket(self, stream, request)

    def close(self) -> None:
        """Release what the app holds open (the databases)."""
        self.digests.stop()
        self.digests.close()
        self.job_store.close()
        self.zip_state.close()


class Server:
    """Listens, accepts, runs one :class:`HTTPConnection` per socket, drains on shutdown."""

    def __init__(self, config: Config, app: App | None = None) -> None:
        self._owns_app = app is None
        self.app = app if app is not None else App(config)
        self.config = self.app.config
        self.idle = IdleScopes()
        self.connections = 0
        self.port: int | None = None
        self._shutdown = trio.Event()

    def shutdown(self) -> None:
        """Stop accepting; idle connections close now, busy ones after their reply."""
        self._shutdown.set()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`shutdown` (then drain for ``drain_timeout``) or cancellation."""
        config = self.config
        listeners = await open_listeners(config.host, config.port)
        self.port = int(listeners[0].socket.getsockname()[1])
        if not self.app.public_url:
            bound = [str(listener.socket.getsockname()[0]) for listener in listeners]
            if any(is_wildcard_host(address) for address in bound):
                # A name that resolved to a wildcard address (the literal forms are
                # refused by Config.validate before anything binds).
                for listener in listeners:
                    listener.socket.close()
                raise ConfigError(wildcard_message(config.host))
            host = config.host if ":" not in config.host else f"[{config.host}]"
            self.app.public_url = f"http://{host}:{self.port}"
        try:
            async with trio.open_nursery() as background:
                self.app.background = background
                await background.start(self.app.run_services)
                try:
                    async with trio.open_nursery() as handlers:
                        async with trio.open_nursery() as acceptors:
                            acceptors.start_soon(self._accept_until_shutdown, listeners, handlers)
                            task_status.started(self.port)
                            await self._shutdown.wait()
                            acceptors.cancel_scope.cancel()
                        self.idle.cancel_all()
                        self.app.drain()
                        drain = trio.current_time() + config.limits.drain_timeout
                        handlers.cancel_scope.deadline = drain
                finally:
                    # Background hashing runs in worker threads that cancellation cannot
                    # interrupt; tell them to give up so shutdown is not held by a long hash.
                    if self._owns_app:
                        self.app.digests.stop()
                    background.cancel_scope.cancel()
        finally:
            self.app.background = None
            if self._owns_app:
                self.app.close()
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await listener.aclose()

    async def _accept_until_shutdown(
        self, listeners: list[trio.SocketListener], handlers: trio.Nursery
    ) -> None:
        await trio.serve_listeners(self._handle, listeners, handler_nursery=handlers)

    async def _handle(self, stream: trio.SocketStream) -> None:
        limits = self.config.limits
        if self.connections >= limits.max_connections:
            await _refuse(stream, limits.send_timeout)
            return
        self.connections += 1
        try:
            connection = HTTPConnection(
                stream,
                self.app,
                limits,
                self.idle,
                access_log_enabled=self.config.access_log,
                websocket=self.app.websocket,
                errors=self.app.router.renderer,
            )
            await connection.run()
        except Exception:
            # A bug must cost one connection, never the server (the nursery would
            # otherwise cancel every other connection with it).
            log.exception("connection handler failed")
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
    config: Config, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a slipstream server for ``config``; ``nursery.start`` returns the bound port."""
    await Server(config).run(task_status=task_status)

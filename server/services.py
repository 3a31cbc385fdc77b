"""The services of one server, built together and closed together.

``async with open_app(config, public_url=...) as services`` opens the stores (digest
cache, download jobs, zip manifests), starts what outlives requests (the download jobs,
the zip service's sweeper) in a background nursery, builds the websocket hub and the
router, and yields a frozen :class:`Services`.  Leaving the block stops background
hashing, cancels the nursery and closes the fetchers and the databases, whatever
happened.  :class:`~slipstream.server.Server` does this once it has bound its port
(the public URL defaults to the bound address), so every service exists, with its
final settings, as long as any request can arrive.

Each route module receives the services it uses (``register(router, *, ...)``), never
this module or the set as a whole.  Every task started in the background nursery goes
through :mod:`slipstream.background` (``spawn`` / ``start``), which logs and contains a
failure instead of letting it stop the server.

:class:`App` is what an embedding program adds to a :class:`Config`: extra storage
layers, how outbound fetches resolve and connect, the zip manifest store.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

import trio

from slipstream.background import spawn, start
from slipstream.digests import DigestCache
from slipstream.digests.store import SCHEMA as DIGESTS
from slipstream.fetch import Dialer, Fetcher, Resolver, system_resolver
from slipstream.jobs.runner import Jobs, Peers
from slipstream.jobs.settings import JobSettings
from slipstream.jobs.store import SCHEMA as DOWNLOADS
from slipstream.jobs.store import JobStore
from slipstream.netpolicy import NetworkPolicy
from slipstream.openfiles import OpenFileCache
from slipstream.presign import Signer
from slipstream.storage import LocalStorage, MemoryStorage, Storage, StorageRegistry
from slipstream.zip.remote import NEAR_RECEIVE_BUFFER
from slipstream.zip.service import ZipService
from slipstream.zip.state import SCHEMA as ZIP_MANIFESTS
from slipstream.zip.state import ZipState

from .config import Config, ConfigError
from .file_reply import StoredFiles
from .metrics import Metrics
from .router import Router
from .routes import (
    api_download,
    drive,
    health,
    local_zip,
    presigned,
    remote_downloads,
    web,
    zip_streams,
)
from .routes import metrics as metrics_route
from .routes.drive import Drives
from .routes.presigned import UrlIssuer
from .ws_hub import WsHub

__all__ = ["App", "Services", "open_app"]

ZipStateFactory = Callable[..., ZipState]
"""Opens the zip service's store: called as ``factory(path, ttl=seconds)``."""


@dataclass(frozen=True, slots=True)
class App:
    """What an embedding program adds to a :class:`Config` (every field optional).

    ``filesystems`` are extra ``fstype`` layers for ``/api/download`` (or replacements
    of ``OsFs`` / ``MemFs``); ``resolver`` and ``dialer`` replace how outbound fetches
    resolve names and connect to checked addresses (see :mod:`slipstream.fetch`);
    ``zip_state`` opens the zip service's store; ``url_clock`` is the wall clock
    presigned URLs are issued and verified against.
    """

    filesystems: Mapping[str, Storage] = field(default_factory=dict)
    resolver: Resolver = system_resolver
    dialer: Dialer | None = None
    zip_state: ZipStateFactory = ZipState
    url_clock: Callable[[], float] = time.time
    """Unix seconds now, for presigned URLs (``time.time``; tests pass a fake clock)."""


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a running server uses, built by :func:`open_app`; none is ever None but
    :attr:`metrics` (None when metrics are off)."""

    config: Config
    public_url: str
    """Base of issued URLs, without a trailing slash."""
    storages: StorageRegistry
    """The ``fstype`` layers of ``/api/download`` (``OsFs``, ``MemFs`` and the App's)."""
    spaces: dict[str, LocalStorage]
    """Folders presigned URLs point into: ``root``, ``app-NAME``, ``drive-ID``."""
    open_files: OpenFileCache
    """Descriptors of recently served files, shared by every local layer above."""
    digests: DigestCache
    policy: NetworkPolicy
    """The address and domain rules of remote downloads."""
    urls: UrlIssuer
    job_store: JobStore
    jobs: Jobs
    """Remote-download jobs (seed 001)."""
    zip_state: ZipState
    zip_service: ZipService
    """Zip-as-a-service (seed 004)."""
    ws: WsHub
    """The websocket surface (``/ws``)."""
    background: trio.Nursery
    """Where work that outlives a request runs (every task through slipstream.background)."""
    router: Router
    metrics: Metrics | None = None
    """The server's Prometheus metrics (its own registry), or None when metrics are off
    (``Config.metrics`` / ``Config.metrics_bind`` unset): then nothing is counted."""
    metrics_router: Router | None = None
    """The router of the separate ``metrics_bind`` listener (``/metrics`` only, no token)."""


@contextlib.asynccontextmanager
async def open_app(
    config: Config, *, public_url: str | None = None, app: App | None = None
) -> AsyncIterator[Services]:
    """Build the services for ``config`` (prepared here), run them, close them on exit.

    ``public_url`` is the base of issued URLs (default ``config.public_url``; one of the
    two is required).  Raises :class:`ConfigError` without one.
    """
    app = app if app is not None else App()
    config.prepare()
    base = (public_url or config.public_url or "").rstrip("/")
    if not base:
        raise ConfigError("open_app needs a public URL (the base of issued URLs)")
    hidden = [config.state_path]
    open_files = OpenFileCache(config.open_files)
    local = partial(LocalStorage, hidden=hidden, open_files=open_files)
    layers: dict[str, Storage] = {
        "OsFs": local(config.root),
        "MemFs": MemoryStorage(),
        **app.filesystems,
    }
    storages = StorageRegistry(layers, default="OsFs")
    spaces = {"root": local(config.root)}
    for name, folder in config.applications.items():
        spaces[f"app-{name}"] = local(folder)
    for drive_id, folder in config.drives.items():
        spaces[f"drive-{drive_id}"] = local(folder)
    policy = NetworkPolicy(
        allow_domains=tuple(config.allow_domains),
        block_domains=tuple(config.block_domains),
        allow_private_networks=config.allow_private_networks,
    )
    signer = Signer(config.secret or "", config.previous_secrets)
    metrics = Metrics(config.metrics_dir) if config.metrics_enabled else None
    urls = UrlIssuer(spaces, signer, base, clock=app.url_clock)
    async with contextlib.AsyncExitStack() as stack:  # exits in reverse order
        stack.callback(open_files.close)  # (descriptors still in use close with their replies)
        # A damaged cache is set aside and started afresh; a damaged record store raises
        # StateDamaged (one line: the file, what is wrong, the way out).
        digests = DigestCache(
            config.state_path / DIGESTS.name,
            observer=metrics.digests if metrics is not None else None,
        )
        stack.callback(digests.close)
        job_store = JobStore(config.state_path / DOWNLOADS.name, history_limit=config.history_limit)
        stack.callback(job_store.close)
        zip_state = app.zip_state(config.state_path / ZIP_MANIFESTS.name, ttl=config.zip_ttl)
        stack.callback(zip_state.close)
        fetcher = Fetcher(policy, resolver=app.resolver, dialer=app.dialer)
        # The zip service's security is its prefix allow list, set by the administrator
        # (who may well list intranet hosts), so its fetcher has no address rule.
        zip_fetcher = Fetcher(
            NetworkPolicy(allow_private_networks=True),
            resolver=app.resolver,
            dialer=app.dialer,
            near_receive_buffer=NEAR_RECEIVE_BUFFER,
        )
        await stack.enter_async_context(fetcher)
        await stack.enter_async_context(zip_fetcher)
        background = await stack.enter_async_context(trio.open_nursery())
        stack.callback(background.cancel_scope.cancel)
        # Background hashing runs in worker threads that cancellation cannot interrupt;
        # tell them to give up first, so closing is not held by a long hash.
        stack.callback(digests.stop)

        spawn(background, "open-file cache sweeper", _sweep_open_files, open_files)
        peers = None
        if config.worker is not None:
            peers = Peers(config.worker.index, config.worker.count)
        jobs = Jobs(
            _job_settings(config),
            job_store,
            fetcher,
            digests,
            observer=metrics.jobs if metrics is not None else None,
            peers=peers,
        )
        await start(background, "download jobs", partial(jobs.run, resume=config.allow_download))
        zip_service = ZipService(zip_fetcher, zip_state, config.zip_allow_prefixes)
        await start(background, "zip manifest sweeper", zip_service.run)
        ws = WsHub.for_config(config, spaces=spaces, digests=digests, jobs=jobs, urls=urls)

        router = Router()
        files = StoredFiles(digests, background, config.content_digest_max)
        health.register(router)
        web.register(router, files)
        api_download.register(router, config=config, storages=storages, files=files)
        presigned.register(router, urls=urls, files=files)
        drive.register(router, Drives(config, spaces, digests, urls))
        remote_downloads.register(router, config=config, jobs=jobs)
        zip_streams.register(
            router,
            service=zip_service,
            public_url=config.public_url,
            background=background,
            metrics=metrics,
        )
        local_zip.register(
            router,
            config=config,
            root=spaces["root"],
            digests=digests,
            background=background,
            urls=urls,
        )
        metrics_router = None
        if metrics is not None:
            if config.metrics:
                metrics_route.register(router, metrics=metrics, tokens=config.tokens)
            if config.metrics_bind is not None:
                metrics_router = Router()
                metrics_route.register(metrics_router, metrics=metrics, tokens=None)
        yield Services(
            config=config,
            public_url=base,
            storages=storages,
            spaces=spaces,
            open_files=open_files,
            digests=digests,
            policy=policy,
            urls=urls,
            job_store=job_store,
            jobs=jobs,
            zip_state=zip_state,
            zip_service=zip_service,
            ws=ws,
            background=background,
            router=router,
            metrics=metrics,
            metrics_router=metrics_router,
        )


async def _sweep_open_files(open_files: OpenFileCache) -> None:
    """Close the open-file cache's idle descriptors every half of its ``inactive``."""
    while True:
        await trio.sleep(open_files.inactive / 2)
        open_files.sweep()


def _job_settings(config: Config) -> JobSettings:
    return JobSettings(
        root=config.root,
        hidden=(config.state_path,),
        max_concurrent=config.max_concurrent_downloads,
        max_fetch_size=config.max_fetch_size or None,
        default_timeout=config.download_timeout,
    )

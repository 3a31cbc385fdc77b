"""Zip-as-a-service (seed 004) as a library: manifests in, resumable zip bodies out.

:meth:`ZipService.create` checks a parsed request against the prefix allow list
(``UNAUTHORIZED_URIS``; :mod:`slipstream.zip.allow`), replaces every URI by its canonical
form (what is checked is what is fetched, and two spellings of one URI are
``DUPLICATE_URIS``), refuses a request id that is already taken (``DOWNLOAD_EXPIRED``,
see :meth:`ZipService.create`), probes every URI (``FAILED_FETCHING_URIS``, also for a
size past 2**63 - 1 or a zip that would be), names the members (``Content-Disposition``,
else the URL path; made safe and de-duplicated), plans the zip and stores the manifest.
:meth:`ZipService.source` turns a stored manifest back into a live
:class:`~slipstream.zip.stream.ZipSource` (after a restart too), and
:meth:`ZipService.delivered` / :meth:`ZipService.release` implement the seed's expiry:
the stream expires once every byte has been delivered at least once (one 200, or 206s
that together cover the zip) and the requests in flight have ended.  An expired
manifest's data, forwarded headers included, is erased at once (:meth:`ZipService.run`
erases those whose ttl ended).

Store writes (the manifest, the delivered bytes, expiry, purging) and the first load of
a manifest's JSON run in worker threads (``trio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio

from slipstream.errors import StateUnavailable
from slipstream.fetch import Fetcher
from slipstream.filenames import deduplicate, disposition_filename, safe_filename, url_filename
from slipstream.netpolicy import Target
from slipstream.numeric import INT64_MAX

from .allow import AllowList
from .errors import ZipError
from .form import ZipRequest, forwarded_headers
from .plan import ZipLayout, ZipMember, manifest_etag, plan_zip
from .remote import SKIP_LIMIT, RemoteObject, probe_all
from .state import ZipState
from .stream import ZipSource

__all__ = ["MAX_SOURCES", "MAX_ZIP_SIZE", "SWEEP_INTERVAL", "Manifest", "ZipService"]

log = logging.getLogger("slipstream.zip")

MAX_ZIP_SIZE: Final = INT64_MAX
"""Largest zip served (and so largest member): what a ``Content-Length`` can carry."""

SWEEP_INTERVAL: Final = 60.0
"""Longest pause of :meth:`ZipService.run` between two purges of expired manifests."""

STORE_RETRY: Final = 5.0
"""Seconds between attempts to write what the store refused (a full disk)."""

MAX_SOURCES = 256
"""Live zip sources kept in memory (their layouts and known CRCs); older idle ones are
dropped and rebuilt from the stored manifest and the CRC cache when asked for again."""


@dataclass(frozen=True)
class Manifest:
    """A stored zip request: what to fetch, how to name it, how to answer errors."""

    id: str
    file_name: str
    response_format: str
    error_redirect_uri: str | None
    headers: tuple[tuple[str, str], ...]
    objects: tuple[RemoteObject, ...]
    names: tuple[str, ...]
    created: float
    fingerprint: str = ""
    """Digest of the request's parameters (:func:`request_fingerprint`): a request id
    posted again is accepted only with the same parameters."""

    @functools.cached_property
    def members(self) -> list[ZipMember]:
        """The zip members, in request order."""
        return [
            ZipMember(name, obj.size, obj.mtime)
            for name, obj in zip(self.names, self.objects, strict=True)
        ]

    @functools.cached_property
    def etag(self) -> str:
        """Strong ETag from names, sizes, mtimes and upstream validators."""
        return manifest_etag(self.members, [obj.validator for obj in self.objects])

    @functools.cached_property
    def last_modified(self) -> int:
        """The newest member mtime, else the creation time (unix seconds)."""
        mtimes = [obj.mtime for obj in self.objects if obj.mtime is not None]
        return max(mtimes) if mtimes else int(self.created)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form (for :class:`ZipState`)."""
        return {
            "id": self.id,
            "file_name": self.file_name,
            "response_format": self.response_format,
            "error_redirect_uri": self.error_redirect_uri,
            "headers": [list(h) for h in self.headers],
            "objects": [
                [o.uri, o.size, o.etag, o.last_modified, o.disposition, o.ranges]
                for o in self.objects
            ],
            "names": list(self.names),
            "created": self.created,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Inverse of :meth:`to_json`.

        Manifests stored before the probe recorded Range support have five fields per
        object; their upstreams count as honouring Range (a member read still copes
        with one that does not, see :func:`~slipstream.zip.remote.read_member`).
        """
        return cls(
            id=data["id"],
            file_name=data["file_name"],
            response_format=data["response_format"],
            error_redirect_uri=data["error_redirect_uri"],
            headers=tuple((str(n), str(v)) for n, v in data["headers"]),
            objects=tuple(RemoteObject(*fields) for fields in data["objects"]),
            names=tuple(data["names"]),
            created=float(data["created"]),
            fingerprint=str(data.get("fingerprint", "")),
        )


def member_names(objects: Sequence[RemoteObject]) -> list[str]:
    """Entry names: Content-Disposition, else the URL path; safe and unique."""
    names = []
    for obj in objects:
        raw = disposition_filename(obj.disposition or "") or url_filename(obj.uri) or "file"
        names.append(safe_filename(raw, default="file"))
    return deduplicate(names)


def request_fingerprint(request: ZipRequest, uris: Sequence[str]) -> str:
    """A digest of what a POST asked for: the canonical ``uris`` in order, the file
    name, the response format and error page, the forwarding flag and the added headers.
    Headers forwarded from the client are not part of it (browsers change them)."""
    params = {
        "uris": list(uris),
        "file_name": request.file_name,
        "format": request.response_format,
        "error_redirect_uri": request.error_redirect_uri,
        "forward_all_headers": request.forward_all_headers,
        "add_headers": [list(h) for h in request.add_headers],
    }
    text = json.dumps(params, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


class ZipService:
    """Creates manifests and serves their zips (see the module docstring).

    ``allow_prefixes`` must be valid prefixes (:mod:`slipstream.zip.allow`), else
    ``ValueError`` naming the first bad one.
    """

    def __init__(
        self,
        fetcher: Fetcher,
        state: ZipState,
        allow_prefixes: Sequence[str],
        *,
        probe_concurrency: int = 16,
        skip_limit: int = SKIP_LIMIT,
    ) -> None:
        self.fetcher = fetcher
        self.state = state
        self.allow = AllowList(allow_prefixes)
        self.probe_concurrency = probe_concurrency
        self.skip_limit = skip_limit
        self._sources: dict[str, ZipSource] = {}
        self._manifests: dict[str, Manifest] = {}
        self._in_flight: dict[str, int] = {}
        self._covered: set[str] = set()
        self._expiring: set[str] = set()
        self._creating: dict[str, trio.Event] = {}
        self._unrecorded: dict[str, list[tuple[int, int, int]]] = {}
        """Deliveries the store refused (disk full): written again by :meth:`run`."""
        self._unexpired: set[str] = set()
        """Manifests expired here whose expiry the store refused: expired all the same."""
        self._refused = trio.Event()
        """Set when the store refuses a write, so :meth:`run` retries in STORE_RETRY."""

    def allowed(self, uri: str) -> bool:
        """Whether ``uri`` is admitted by the allow list (none configured: never)."""
        return self.allow.canonical(uri) is not None

    def check_url(self, target: Target) -> None:
        """Every fetch hop (redirects too) must stay inside the allow list."""
        self.allow.check(target)

    async def create(
        self, request: ZipRequest, client_headers: Sequence[tuple[str, str]]
    ) -> Manifest:
        """Check, probe, name, plan and store; raises :class:`ZipError`.

        A request id that is already known gives the stored manifest back when the
        request's parameters (:func:`request_fingerprint`) are the same (nothing is
        fetched again); different parameters, or an id whose stream expired, raise
        ``DOWNLOAD_EXPIRED`` in the request's format with the id as the record.
        Two requests for one new id at once are handled one after the other.
        """
        fmt, redirect = request.response_format, request.error_redirect_uri
        canonical: dict[str, str] = {}
        refused: list[str] = []
        duplicates: list[str] = []
        for uri in request.uris:
            url = self.allow.canonical(uri)
            if url is None:
                refused.append(uri)
            elif url in canonical:
                duplicates.append(uri)
            else:
                canonical[url] = uri
        if refused:
            raise ZipError("UNAUTHORIZED_URIS", refused, fmt=fmt, redirect_uri=redirect)
        if duplicates:
            raise ZipError("DUPLICATE_URIS", duplicates, fmt=fmt, redirect_uri=redirect)
        fingerprint = request_fingerprint(request, list(canonical))
        ident = request.request_id
        while (busy := self._creating.get(ident)) is not None:
            await busy.wait()
        done = self._creating[ident] = trio.Event()
        try:
            existing = await self._known(ident, fingerprint, fmt, redirect)
            if existing is not None:
                return existing
            manifest, layout = await self._probe(request, canonical, client_headers, fingerprint)
            save = self.state.save_manifest
            if not await trio.to_thread.run_sync(save, manifest.id, manifest.to_json()):
                raise self._taken(ident, fmt, redirect)  # another process took the id
        finally:
            del self._creating[ident]
            done.set()
        self._forget(manifest.id)
        # Built now rather than at the first GET, whose first byte would wait for the
        # plan and the CRC cache lookups (about 20 ms for 1,000 members).
        self._manifests[manifest.id] = manifest
        self.source(manifest, layout)
        return manifest

    def _taken(self, ident: str, fmt: str, redirect: str | None) -> ZipError:
        return ZipError(
            "DOWNLOAD_EXPIRED", [ident], fmt=fmt, redirect_uri=redirect, html_only=False
        )

    async def _known(
        self, ident: str, fingerprint: str, fmt: str, redirect: str | None
    ) -> Manifest | None:
        """The live manifest of ``ident`` if it was asked for with the same parameters;
        None when the id is new; ``DOWNLOAD_EXPIRED`` otherwise."""
        status = self.state.status(ident)
        if status is None:
            return None
        manifest = await self.manifest(ident) if status == "live" else None
        if manifest is None or manifest.fingerprint != fingerprint:
            raise self._taken(ident, fmt, redirect)
        return manifest

    async def _probe(
        self,
        request: ZipRequest,
        canonical: dict[str, str],
        client_headers: Sequence[tuple[str, str]],
        fingerprint: str,
    ) -> tuple[Manifest, ZipLayout]:
        """Probe the canonical URIs and build the manifest and its layout; errors name
        the client's spelling of each URI."""
        fmt, redirect = request.response_format, request.error_redirect_uri
        headers = tuple(forwarded_headers(request, client_headers))
        try:
            objects = await probe_all(
                self.fetcher,
                list(canonical),
                headers,
                self.check_url,
                concurrency=self.probe_concurrency,
            )
        except ZipError as exc:
            records = [canonical.get(url, url) for url in exc.records]
            raise ZipError(exc.key, records, fmt=fmt, redirect_uri=redirect) from None
        names = member_names(objects)
        members = [ZipMember(n, o.size, o.mtime) for n, o in zip(names, objects, strict=True)]
        layout = plan_zip(members)
        past = layout.first_past(MAX_ZIP_SIZE)
        if past is not None:
            too_large = [canonical[objects[past].uri]]
            raise ZipError("FAILED_FETCHING_URIS", too_large, fmt=fmt, redirect_uri=redirect)
        manifest = Manifest(
            id=request.request_id,
            file_name=request.file_name,
            response_format=fmt,
            error_redirect_uri=redirect,
            headers=headers,
            objects=tuple(objects),
            names=tuple(names),
            created=time.time(),
            fingerprint=fingerprint,
        )
        return manifest, layout

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Purge expired manifests (their stored headers first of all) until cancelled:
        when the oldest live one's ttl ends, and at least every :data:`SWEEP_INTERVAL`."""
        task_status.started()
        while True:
            pause = await self._sweep()
            if self._unrecorded or self._unexpired:
                pause = min(pause, STORE_RETRY)
            else:  # sleep, unless the store refuses a write meanwhile
                self._refused = trio.Event()
                with trio.move_on_after(max(pause, 0.001)):
                    await self._refused.wait()
                if not self._refused.is_set():
                    continue
                pause = STORE_RETRY
            await trio.sleep(max(pause, 0.001))

    async def _sweep(self) -> float:
        """One round of :meth:`run`: purge, write what the store refused before; the
        seconds until the next round is due.  A failing store must not stop the sweeper:
        it is logged (by the store) and the round is tried again later."""
        pause = min(SWEEP_INTERVAL, self.state.ttl)
        try:
            await trio.to_thread.run_sync(self.state.purge, self.state.clock())
        except StateUnavailable:
            return min(pause, STORE_RETRY)
        except Exception:  # anything else here is logged too, and retried next round
            log.exception("purging expired zip manifests failed")
        try:
            await self._write_pending()
            due = self.state.next_expiry()
        except StateUnavailable:
            return min(pause, STORE_RETRY)
        return pause if due is None else min(pause, due - self.state.clock())

    async def manifest(self, manifest_id: str) -> Manifest | None:
        """The live manifest (None when unknown or expired).

        Loaded and parsed once, in a worker thread (a manifest of many URIs is a large
        JSON text); later requests only ask the store whether it is still live, a point
        lookup cheap enough for the event loop.
        """
        if manifest_id in self._expiring or manifest_id in self._unexpired:
            return None
        cached = self._manifests.get(manifest_id)
        if cached is not None:
            if self.state.is_live(manifest_id):
                return cached
            self._forget(manifest_id)
            return None

        def load() -> Manifest | None:
            data = self.state.load_manifest(manifest_id)
            return None if data is None else Manifest.from_json(data)

        manifest = await trio.to_thread.run_sync(load)
        if manifest is not None:
            self._manifests[manifest_id] = manifest
        return manifest

    def source(self, manifest: Manifest, layout: ZipLayout | None = None) -> ZipSource:
        """The manifest's :class:`ZipSource` (one per manifest, so CRC work is shared);
        ``layout`` is its plan when the caller has it already."""
        source = self._sources.get(manifest.id)
        if source is None:
            source = ZipSource(
                layout if layout is not None else plan_zip(manifest.members),
                manifest.objects,
                self.fetcher,
                manifest.headers,
                self.check_url,
                self.state,
                skip_limit=self.skip_limit,
            )
            self._sources[manifest.id] = source
            if len(self._sources) > MAX_SOURCES:  # forget the oldest idle one (rebuilt on use)
                idle = next((m for m in self._sources if m not in self._in_flight), None)
                if idle is not None:
                    self._sources.pop(idle)
                    self._manifests.pop(idle, None)
        return source

    def begin(self, manifest_id: str) -> None:
        """A reply of this manifest starts (counts as in flight until :meth:`release`)."""
        self._in_flight[manifest_id] = self._in_flight.get(manifest_id, 0) + 1

    async def delivered(self, manifest_id: str, start: int, stop: int, total: int) -> None:
        """Bytes ``[start, stop)`` reached the client; may complete the coverage.

        When the store refuses the write, the interval is kept and written by :meth:`run`.
        """
        if manifest_id in self._unrecorded:  # keep the order: after those waiting
            self._unrecorded[manifest_id].append((start, stop, total))
            return
        record = self.state.record_delivered
        try:
            if await trio.to_thread.run_sync(record, manifest_id, start, stop, total):
                self._covered.add(manifest_id)
        except StateUnavailable:  # logged by the store
            self._unrecorded[manifest_id] = [(start, stop, total)]
            self._refused.set()

    async def release(self, manifest_id: str) -> None:
        """A reply ended; expire the stream if it is fully delivered and none is left."""
        left = self._in_flight.get(manifest_id, 1) - 1
        if left > 0:
            self._in_flight[manifest_id] = left
            return
        self._in_flight.pop(manifest_id, None)
        if manifest_id in self._covered:
            await self._expire(manifest_id)

    async def _expire(self, manifest_id: str) -> None:
        self._forget(manifest_id)
        self._expiring.add(manifest_id)  # expired from now, while the store catches up
        try:
            await trio.to_thread.run_sync(self.state.expire, manifest_id)
        except StateUnavailable:  # logged by the store; run() tries again
            self._unexpired.add(manifest_id)
            self._refused.set()
        else:
            self._unexpired.discard(manifest_id)
        finally:
            self._expiring.discard(manifest_id)

    async def _write_pending(self) -> None:
        """Write what the store refused before (deliveries, expiries); stops at a failure."""
        record = self.state.record_delivered
        for manifest_id, waiting in list(self._unrecorded.items()):
            while waiting:
                try:
                    covered = await trio.to_thread.run_sync(record, manifest_id, *waiting[0])
                except StateUnavailable:
                    return
                waiting.pop(0)
                if covered:
                    self._covered.add(manifest_id)
            del self._unrecorded[manifest_id]
            if manifest_id in self._covered and manifest_id not in self._in_flight:
                await self._expire(manifest_id)
        for manifest_id in list(self._unexpired):
            await self._expire(manifest_id)
            if manifest_id in self._unexpired:
                return

    def _forget(self, manifest_id: str) -> None:
        self._sources.pop(manifest_id, None)
        self._manifests.pop(manifest_id, None)
        self._covered.discard(manifest_id)

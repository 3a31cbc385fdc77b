"""Prometheus metrics of one server: what ``GET /metrics`` exposes.

:class:`Metrics` holds the server's own :class:`~prometheus_client.CollectorRegistry` (never
the process-global one), so two servers embedded in one process keep separate numbers.  It
is built once by :func:`~slipstream.server.services.open_app` when metrics are on
(``--metrics`` or ``--metrics-bind``) and handed to what counts: the connection loop
(requests, bytes, in flight, open connections and websockets), the digest cache
(:class:`DigestCounters`), the download jobs (:class:`JobCounters`) and the zip streams.
With metrics off nothing is built and every hook is a ``None`` check.

Hot-path cost: one counter add per reply for the request, one for its body bytes and one
for the bytes ``sendfile`` sent (counted once per reply, never per chunk), and an in-flight
gauge up and down.  The labelled children of a ``(route, status)`` pair are looked up once
and kept in a dict, so a reply does not pay ``labels()``'s locking and validation.

Several processes (``--workers``): prometheus_client's multiprocess mode.  Each worker is
started with ``PROMETHEUS_MULTIPROC_DIR`` set to one shared directory (the supervisor
clears it with :func:`reset_multiprocess_dir` before starting workers, and calls
:func:`worker_exited` when one ends); every metric then lives in a per-process file there,
and a scrape of any worker (``Config.metrics_dir`` set to the same directory) adds up
every worker's files with a :class:`~prometheus_client.multiprocess.MultiProcessCollector`:
counters and histograms sum over all workers, dead ones included; gauges sum over the
live ones (``livesum``).
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from slipstream.jobs.store import ACTIVE, FINISHED

__all__ = [
    "MULTIPROC_ENV",
    "DigestCounters",
    "JobCounters",
    "Metrics",
    "multiprocess_problem",
    "reset_multiprocess_dir",
    "worker_exited",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable that puts prometheus_client in multiprocess mode (read when it
is first imported, so it must be set before the process starts)."""

UPSTREAM_JOB_ERRORS = frozenset({"NETWORK_ERROR", "REMOTE_FILE_NOT_FOUND", "DOWNLOAD_TIMEOUT"})
"""Error keys of a finished download job that count as an upstream error."""

HASH_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0)
"""Seconds: a small file hashes in well under a millisecond, 1 GiB in a few seconds."""


class DigestCounters:
    """The digest cache's counters (a :class:`~slipstream.digests.cache.CacheObserver`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._hits = Counter(
            "slipstream_digest_cache_hits",
            "Requests for a file version's checksums answered from the digest cache.",
            registry=registry,
        )
        self._misses = Counter(
            "slipstream_digest_cache_misses",
            "File versions whose checksums had to be computed (concurrent requests share one).",
            registry=registry,
        )
        self._seconds = Histogram(
            "slipstream_digest_hash_duration_seconds",
            "Seconds spent hashing one file version in a worker thread.",
            buckets=HASH_BUCKETS,
            registry=registry,
        )

    def hit(self) -> None:
        """A request answered from the cache."""
        self._hits.inc()

    def miss(self) -> None:
        """A file version that has to be hashed."""
        self._misses.inc()

    def hashed(self, seconds: float) -> None:
        """A computation took ``seconds``."""
        self._seconds.observe(seconds)


class JobCounters:
    """The download jobs' gauges and counters (a :class:`~slipstream.jobs.runner.JobObserver`)."""

    def __init__(self, registry: CollectorRegistry, upstream_errors: Counter) -> None:
        jobs = Gauge(
            "slipstream_download_jobs",
            "Remote-download jobs running in this server, by state.",
            ["state"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        finished = Counter(
            "slipstream_download_jobs_finished",
            "Remote-download jobs that ended, by outcome.",
            ["state"],
            registry=registry,
        )
        self._active = {state: jobs.labels(state) for state in ACTIVE}
        self._finished = {state: finished.labels(state) for state in FINISHED}
        self._fetched = Counter(
            "slipstream_download_fetched_bytes",
            "Body bytes remote-download jobs received from their upstreams.",
            registry=registry,
        )
        self._upstream_errors = upstream_errors.labels("download")

    def moved(self, old: str | None, new: str | None) -> None:
        """A job went from state ``old`` to ``new`` (None: not running here)."""
        if old in self._active:
            self._active[old].dec()
        if new in self._active:
            self._active[new].inc()

    def finished(self, status: str, error: str | None) -> None:
        """A job ended as ``status``."""
        if status in self._finished:
            self._finished[status].inc()
        if error in UPSTREAM_JOB_ERRORS:
            self._upstream_errors.inc()

    def fetched(self, count: int) -> None:
        """``count`` more bytes arrived."""
        self._fetched.inc(count)


class Metrics:
    """Every metric of one server, in its own registry.

    ``multiprocess_dir``: scrapes add up the per-process files in that directory (the
    process must run in prometheus_client's multiprocess mode for it, see
    :func:`multiprocess_problem`); None: this process's registry alone.
    """

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "slipstream_http_requests",
            "HTTP requests answered, by route pattern and status (a websocket upgrade is 101).",
            ["route", "status"],
            registry=registry,
        )
        self._response_bytes = Counter(
            "slipstream_http_response_bytes",
            "Body bytes of the HTTP replies sent in full, by route pattern.",
            ["route"],
            registry=registry,
        )
        self._sendfile_bytes = Counter(
            "slipstream_http_sendfile_bytes",
            "The part of slipstream_http_response_bytes_total sent with zero-copy sendfile.",
            ["route"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "slipstream_http_requests_in_flight",
            "HTTP requests being answered now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.open_connections = Gauge(
            "slipstream_open_connections",
            "Client TCP connections open now (websockets included).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.open_websockets = Gauge(
            "slipstream_open_websockets",
            "Websocket sessions open now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.zip_streams = Gauge(
            "slipstream_zip_streams_active",
            "Zip-as-a-service replies (/stream/<uuid>) being sent now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        upstream_errors = Counter(
            "slipstream_upstream_errors",
            "Fetches from an upstream that failed: zip members that could not be fetched or "
            "changed (service=zip), download jobs that failed on the network, a missing "
            "remote file or a timeout (service=download).",
            ["service"],
            registry=registry,
        )
        self.zip_upstream_errors = upstream_errors.labels("zip")
        self.digests = DigestCounters(registry)
        self.jobs = JobCounters(registry, upstream_errors)
        self._children: dict[tuple[str, int], tuple[Counter, Counter, Counter]] = {}

    def request_done(self, route: str, status: int, sent: int, sendfile: int) -> None:
        """One reply went out: ``sent`` body bytes, ``sendfile`` of them by ``sendfile``."""
        children = self._children.get((route, status))
        if children is None:
            children = self._children[(route, status)] = (
                self._requests.labels(route, str(status)),
                self._response_bytes.labels(route),
                self._sendfile_bytes.labels(route),
            )
        children[0].inc()
        if sent:
            children[1].inc(sent)
            if sendfile:
                children[2].inc(sendfile)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and ``Content-Type`` of a scrape (OpenMetrics when ``accept`` asks)."""
        encode, content_type = choose_encoder(accept or "")
        if self.multiprocess_dir is None:
            return encode(self.registry), content_type
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return encode(merged), content_type


def multiprocess_problem(directory: Path) -> str | None:
    """Why this process cannot add up the workers' metrics in ``directory``, or None.

    The process must have started in prometheus_client's multiprocess mode with
    ``PROMETHEUS_MULTIPROC_DIR`` naming that directory (the mode is chosen once, when
    prometheus_client is imported), and the directory must exist.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    mode = getattr(prometheus_values.ValueClass, "_multiprocess", False)
    if not configured or not mode:
        return f"needs {MULTIPROC_ENV}={directory} in the environment before the process starts"
    if Path(configured).resolve() != Path(directory).resolve():
        return f"is {directory}, but {MULTIPROC_ENV} is {configured}"
    if not Path(directory).is_dir():
        return f"{directory} is not a directory"
    return None


def reset_multiprocess_dir(directory: Path) -> None:
    """Create ``directory`` (owner-only) and delete the metric files of earlier runs; a
    supervisor calls this once before it starts its workers."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def worker_exited(pid: int, directory: Path) -> None:
    """Drop the live gauges of worker ``pid`` (its counters keep counting in the sums)."""
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]

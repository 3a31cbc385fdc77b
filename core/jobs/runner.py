"""Remote-download jobs: fetch a URL into a directory, with live progress and history.

:class:`Jobs` is the library API (the server's seed-001 routes are a thin layer on it)::

    async with Fetcher(NetworkPolicy()) as fetcher, trio.open_nursery() as nursery:
        jobs = Jobs(JobSettings(root=Path("files")), JobStore("jobs.sqlite3"), fetcher)
        await nursery.start(jobs.run)
        record = await jobs.start("https://example.com/a.iso", "isos")
        done = await jobs.wait(record.id)

A job streams the body into a hidden ``.part`` file beside its target while one
``MultiDigest`` pass computes the checksums (all but SHA-1, computed on first demand by the
digest cache; :class:`~slipstream.jobs.transfer.Transfer`:
receiving and writing+hashing run as a pipeline).  The finished file is fsynced, checked
against an optional SHA-256, published without overwriting anything (see
:mod:`slipstream.jobs.files`) and its digests stored in the digest cache, so it is servable
with checksums at once.  What a start request may ask is checked by
:func:`~slipstream.jobs.settings.check_start`.

Jobs are rows in a :class:`~slipstream.jobs.store.JobStore`, written from worker threads
(``trio.to_thread``) so a slow commit never stalls the event loop.  When the store is
unavailable (a full disk), a start is refused with ``STATE_UNAVAILABLE`` (503), while
running jobs go on and their later rows are kept in memory and written again every
``store_retry`` seconds until the store works.  Every job runs in
the jobs nursery under :func:`slipstream.background.spawn`: a failure nobody expected
(the store refusing the final write, say) is logged and costs that job only, never the
nursery and the server around it.  When the process dies, the
rows of running jobs stay active; :meth:`Jobs.run` resumes them from the ``.part`` size
with ``Range`` + ``If-Range`` (the validator seen when the body started), and the
upstream's answer decides: ``206`` appends, ``200`` restarts from zero.  Cancelling
:meth:`Jobs.run` (server shutdown) checkpoints running jobs the same way.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import trio

from slipstream.background import spawn
from slipstream.digests import DigestCache
from slipstream.errors import StateUnavailable
from slipstream.fetch import Fetcher, FetchError
from slipstream.filenames import part_name, safe_filename, url_filename

from .files import PartFile, open_directory
from .settings import JobRefused, JobSettings, check_start
from .store import ACTIVE, FINISHED, JobRecord, JobStore, active_fields, history_fields
from .transfer import JobFailed, Transfer

__all__ = ["JobObserver", "JobRefused", "JobSettings", "Jobs", "Peers"]

log = logging.getLogger("slipstream.jobs")

_SPEED_WINDOW: Final = 3.0


class JobObserver(Protocol):
    """What :class:`Jobs` reports (operators' gauges and counters); called on the Trio thread."""

    def moved(self, old: str | None, new: str | None) -> None:
        """A job of this process went from state ``old`` to ``new``.

        ``old`` None: it was not running here yet (started or resumed); ``new`` None: it
        stopped running here while still active in the store (shutdown); a state of
        ``FINISHED`` as ``new``: it ended (see :meth:`finished`).
        """

    def finished(self, status: str, error: str | None) -> None:
        """A job ended as ``status`` (``completed``, ``failed``, ``cancelled``), with the
        seed's error key of a failure."""

    def fetched(self, count: int) -> None:
        """``count`` more bytes of a job's body arrived from its upstream."""


@dataclass(frozen=True, slots=True)
class Peers:
    """This process is worker ``worker`` of ``workers`` sharing one job store.

    A job runs in the worker that started it (its row's ``owner``); after a restart,
    worker k resumes the active rows whose owner is k modulo ``workers``.  Every
    ``interval`` seconds each worker writes its jobs' progress and events to the store
    and reads the others' (:meth:`Jobs.active` lists every worker's jobs, subscribers
    get every worker's events, :meth:`Jobs.cancel_anywhere` reaches any job).
    """

    worker: int
    workers: int
    interval: float = 0.1
    keep_events: float = 60.0
    """Seconds shared events are kept (a worker reads them every ``interval``)."""

    def resumes(self, record: JobRecord) -> bool:
        """True when this worker resumes ``record`` (an active row left by a previous run)."""
        return (record.owner or 0) % self.workers == self.worker


@dataclass(eq=False)
class _Job:
    record: JobRecord
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    cancel_requested: bool = False
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    last_event: float = float("-inf")
    reported: str | None = None
    """The active state last told to the observer (None: not running here)."""
    counted: int = 0
    """The ``current_size`` up to which fetched bytes were told to the observer."""

    def speed(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, s0), (t1, s1) = self.samples[0], self.samples[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else None

    def sample(self, now: float, size: int) -> None:
        self.samples.append((now, size))
        while len(self.samples) > 2 and now - self.samples[0][0] > _SPEED_WINDOW:
            self.samples.popleft()


class Jobs:
    """Starts, runs, lists, cancels and resumes remote-download jobs."""

    def __init__(
        self,
        settings: JobSettings,
        store: JobStore,
        fetcher: Fetcher,
        digests: DigestCache | None = None,
        observer: JobObserver | None = None,
        *,
        peers: Peers | None = None,
    ) -> None:
        self.settings = settings
        self.observer = observer
        """Told of state changes and fetched bytes (None: nothing is counted)."""
        self.peers = peers
        """Set when several worker processes share ``store`` (see :class:`Peers`)."""
        self._outbox: list[str] = []
        """Events not yet shared with the other workers (JSON)."""
        self._moved: set[str] = set()
        """Local jobs whose size changed since they were last shared."""
        self.store = store
        self.fetcher = fetcher
        self.digests = digests
        self._limiter = trio.CapacityLimiter(max(1, settings.max_concurrent))
        self._jobs: dict[str, _Job] = {}
        self._ending: dict[str, _Job] = {}
        """Jobs out of the active set whose final record is being written."""
        self._unsaved: dict[str, JobRecord] = {}
        """Records whose last write failed (the store was unavailable): written again
        every ``settings.store_retry`` seconds, and answered from here meanwhile."""
        self._subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = set()
        self._nursery: trio.Nursery | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def run(
        self, *, resume: bool = True, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run jobs until cancelled; resumes the jobs a previous process left active.

        With ``resume=False`` those jobs stay in the store untouched.  On cancellation
        every running job is checkpointed (its ``.part`` file fsynced, its row left
        active) so that the next :meth:`run` resumes it.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for record in self.store.active() if resume else ():
                    if self.peers is not None:
                        if not self.peers.resumes(record):
                            continue  # another worker's to resume
                        record.owner = self.peers.worker
                    record.status = "queued"
                    self._launch(record)
                spawn(nursery, "writing job records again", self._retry_unsaved, logger=log)
                if self.peers is not None:
                    spawn(nursery, "sharing jobs with the other workers", self._share, logger=log)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
                await self._write_unsaved()
            if self._unsaved:
                log.warning(
                    "%d download job records could not be written (the state store failed): %s",
                    len(self._unsaved),
                    ", ".join(self._unsaved),
                )

    # -- API ------------------------------------------------------------------------------

    async def start(
        self,
        url: str,
        directory: str,
        *,
        filename: str | None = None,
        timeout: float | None = None,
        sha256: str | None = None,
    ) -> JobRecord:
        """Check and queue a job; raises :class:`JobRefused` or ``PathNotAllowed``."""
        if self._nursery is None:
            raise RuntimeError("Jobs.run() is not running")
        folder = check_start(directory, timeout, sha256)
        try:
            target = await self.fetcher.preflight(url)
        except FetchError as exc:
            status = 400 if exc.key == "INVALID_URL" else 403
            raise JobRefused(exc.key, status, exc.message) from None
        try:
            fd = await trio.to_thread.run_sync(
                lambda: open_directory(self.settings.root, folder, hidden=self.settings.hidden)
            )
        except OSError as exc:
            raise JobRefused("STORAGE_ERROR", 500, f"cannot use that directory: {exc}") from None
        os.close(fd)
        name = safe_filename(filename or url_filename(target.url) or "download")
        record = JobRecord(
            id=str(uuid.uuid4()),
            url=target.url,
            directory=folder,
            filename=name,
            name_given=bool(filename),
            status="queued",
            start_time=int(time.time()),
            timeout=float(timeout or self.settings.default_timeout),
            expected_sha256=sha256.lower() if sha256 else None,
            owner=self.peers.worker if self.peers is not None else None,
        )
        # Raises StateUnavailable (503) when the store cannot record the job: a job that
        # is not recorded would not be resumed or listed, so it does not start.
        await trio.to_thread.run_sync(self.store.save, record)
        self._launch(record)
        return record

    def active(self, directory: str | None = None) -> list[dict[str, Any]]:
        """Active jobs (``queued``, ``starting``, ``downloading``), oldest first.

        With :attr:`peers`, the jobs other workers run are listed too, as they last
        shared them (at most :attr:`Peers.interval` old)."""
        mine = [
            active_fields(job.record, job.speed())
            for job in self._jobs.values()
            if directory is None or job.record.directory == directory
        ]
        if self.peers is None:
            return mine
        rows = self.store.active()
        theirs = [
            active_fields(record, record.speed)
            for record in rows
            if record.id not in self._jobs and record.id not in self._ending
            if directory is None or record.directory == directory
        ]
        if not theirs:
            return mine
        order = {record.id: n for n, record in enumerate(rows)}
        both = [*mine, *theirs]
        both.sort(key=lambda fields: order.get(fields["id"], len(order)))
        return both

    async def history(self, directory: str | None = None) -> list[dict[str, Any]]:
        """Finished jobs, newest first (from the store: survives restarts)."""
        # A job leaves the active list before its final row is written (or while the
        # store refuses it): list it from memory meanwhile, so it is never in neither
        # list.  Looked at before the store is read: a row written after this point is
        # in what the store returns.
        ending = [job.record for job in self._ending.values()]
        waiting = [
            r
            for r in {r.id: r for r in (*ending, *self._unsaved.values())}.values()
            if r.status in FINISHED and directory in (None, r.directory)
        ]
        records = await trio.to_thread.run_sync(self.store.history, directory)
        if waiting:  # finished, not yet written: listed all the same
            ids = {r.id for r in waiting}
            records = [*waiting, *(r for r in records if r.id not in ids)]
            records.sort(key=lambda r: r.end_time or 0, reverse=True)
        return [history_fields(r) for r in records]

    def cancel(self, job_id: str) -> bool:
        """Cancel an active job (its partial file is removed); False if not active."""
        job = self._jobs.get(job_id)
        if job is None:
            return False
        job.cancel_requested = True
        job.scope.cancel()
        return True

    async def cancel_anywhere(self, job_id: str) -> bool:
        """:meth:`cancel`, also for a job another worker runs (with :attr:`peers`): it
        is asked to through the store and cancels it within :attr:`Peers.interval`."""
        if self.cancel(job_id):
            return True
        if self.peers is None or job_id in self._ending:
            return False
        return await trio.to_thread.run_sync(self.store.request_cancel, job_id)

    async def wait(self, job_id: str) -> JobRecord | None:
        """Wait until job ``job_id`` finishes; its final record (None if unknown)."""
        job = self._jobs.get(job_id) or self._ending.get(job_id)
        if job is not None:
            await job.done.wait()
        return self._unsaved.get(job_id) or self.store.get(job_id)

    @contextlib.contextmanager
    def subscribe(self, buffer: int = 256) -> Iterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        """Progress events for every job while the block runs.

        Each event is ``{"event": "download", ...}`` with the active fields (at most one
        per job every ``progress_interval``), and a final one with the history fields.
        A subscriber that falls ``buffer`` events behind loses events, never blocks jobs.
        """
        send, receive = trio.open_memory_channel[dict[str, Any]](buffer)
        self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    # -- running --------------------------------------------------------------------------

    def _launch(self, record: JobRecord) -> None:
        assert self._nursery is not None
        job = _Job(record, counted=record.current_size)  # a resumed job's bytes were counted
        self._jobs[record.id] = job
        self._move(job, record.status)
        spawn(self._nursery, f"download {record.id}", self._run_job, job, logger=log)

    def _publish(self, event: dict[str, Any]) -> None:
        if self.peers is not None:
            self._outbox.append(json.dumps(event))
        self._deliver(event)

    def _deliver(self, event: dict[str, Any]) -> None:
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(channel)

    def _move(self, job: _Job, new: str | None) -> None:
        """Tell the observer that ``job`` is now in state ``new`` (see :class:`JobObserver`)."""
        if self.observer is not None and new != job.reported:
            self.observer.moved(job.reported, new)
        job.reported = new if new in ACTIVE else None

    def _count_fetched(self, job: _Job) -> None:
        """Tell the observer the bytes that arrived since the last call (one add per call)."""
        size = job.record.current_size
        if size > job.counted and self.observer is not None:
            self.observer.fetched(size - job.counted)
        job.counted = size  # a restarted body (a 200 to a resume) starts again from 0

    def _progress(self, job: _Job, *, force: bool = False) -> None:
        self._count_fetched(job)
        now = trio.current_time()
        job.sample(now, job.record.current_size)
        self._moved.add(job.record.id)
        if force or now - job.last_event >= self.settings.progress_interval:
            job.last_event = now
            self._publish({"event": "download", **active_fields(job.record, job.speed())})

    async def _set_status(self, job: _Job, status: str) -> None:
        job.record.status = status
        self._move(job, status)
        await self._save(job.record)
        self._progress(job, force=True)

    async def _save(self, record: JobRecord) -> bool:
        """Write ``record`` (``finish`` once it ended); when the store is unavailable, keep
        it for :meth:`_retry_unsaved` and go on: the job itself does not need the row."""
        write = self.store.finish if record.status in FINISHED else self.store.save
        try:
            await trio.to_thread.run_sync(write, record)
        except StateUnavailable:  # logged by the store
            self._unsaved[record.id] = record
            return False
        if self._unsaved.get(record.id) is record:
            del self._unsaved[record.id]
        return True

    async def _write_unsaved(self) -> None:
        """One attempt at every unsaved record, stopping at the first failure."""
        for record in list(self._unsaved.values()):
            if not await self._save(record):
                return

    async def _retry_unsaved(self) -> None:
        while True:
            await trio.sleep(self.settings.store_retry)
            await self._write_unsaved()

    async def _share(self) -> None:
        """With :attr:`peers`, every :attr:`Peers.interval`: write this worker's progress
        and events, cancel the jobs other workers were asked to cancel, and deliver the
        other workers' events to this worker's subscribers."""
        assert self.peers is not None
        peers = self.peers
        seen = await trio.to_thread.run_sync(self.store.last_event)
        trimmed = trio.current_time()
        while True:
            await trio.sleep(peers.interval)
            progress = []
            for job_id in self._moved:
                job = self._jobs.get(job_id)
                if job is not None:
                    job.record.speed = job.speed()
                    progress.append(copy.copy(job.record))
            events, self._outbox = self._outbox, []
            self._moved.clear()
            try:
                await trio.to_thread.run_sync(self.store.share, progress, peers.worker, events)
                asked = self.store.cancel_requests()
                handled = [job_id for job_id in asked if self.cancel(job_id)]
                if handled or (asked and trio.current_time() - trimmed > peers.keep_events):
                    await trio.to_thread.run_sync(self.store.forget_cancels, handled)
                for number, text in self.store.events_after(seen, peers.worker):
                    seen = number
                    self._deliver(json.loads(text))
                if trio.current_time() - trimmed > peers.keep_events:
                    trimmed = trio.current_time()
                    await trio.to_thread.run_sync(self.store.trim_events, peers.keep_events)
            except StateUnavailable:  # logged by the store; the next round tries again
                self._outbox = events + self._outbox

    async def _run_job(self, job: _Job) -> None:
        record = job.record
        outcome: tuple[str, str | None] | None = None
        part: PartFile | None = None
        dir_fd = -1
        try:
            with job.scope:
                try:
                    async with self._limiter:
                        await self._set_status(job, "starting")
                        with trio.fail_after(record.timeout):
                            dir_fd = await trio.to_thread.run_sync(self._open_dir, record)
                            part = PartFile(
                                dir_fd, part_name(record.id), resume=record.validator is not None
                            )
                            transfer = Transfer(
                                record,
                                part,
                                self.fetcher,
                                self.settings.max_fetch_size,
                                progress=lambda: self._progress(job),
                                downloading=lambda: self._set_status(job, "downloading"),
                            )
                            await transfer.run()
                            await transfer.complete(dir_fd, self.digests)
                    outcome = ("completed", None)
                except trio.TooSlowError:
                    outcome = ("failed", "DOWNLOAD_TIMEOUT")
                except FetchError as exc:
                    outcome = ("failed", exc.key)
                except JobFailed as exc:
                    log.info("download %s failed: %s", record.id, exc)
                    outcome = ("failed", exc.key)
                except OSError as exc:
                    log.warning("download %s: storage error: %s", record.id, exc)
                    outcome = ("failed", "STORAGE_ERROR")
                except Exception:
                    log.exception("download %s failed unexpectedly", record.id)
                    outcome = ("failed", "INTERNAL_ERROR")
            if job.cancel_requested and outcome is None:
                outcome = ("cancelled", None)
        finally:
            try:
                with trio.CancelScope(shield=True):  # the record must be written, even at shutdown
                    await self._end(job, part, outcome)
            except Exception:
                log.exception("download %s: recording how it ended (%s) failed", record.id, outcome)
            finally:
                self._jobs.pop(record.id, None)
                if job.reported is not None:  # recording the end failed: it left all the same
                    self._move(job, None)
                job.done.set()
                if dir_fd >= 0:
                    os.close(dir_fd)

    async def _end(
        self, job: _Job, part: PartFile | None, outcome: tuple[str, str | None] | None
    ) -> None:
        """Record how a job ended; ``outcome`` None means shutdown: checkpoint it."""
        record = job.record
        if outcome is None:
            if part is not None and part.fd >= 0:
                with contextlib.suppress(OSError):
                    part.sync()
                record.current_size = part.size
                part.close()
            self._count_fetched(job)
            self._move(job, None)
            record.status = "queued"
            await self._save(record)
            return
        if part is not None:
            with contextlib.suppress(OSError):
                if outcome[0] == "completed":
                    part.close()
                else:
                    part.remove()
        elif outcome[0] != "completed":
            self._remove_part(record)
        self._count_fetched(job)
        record.status, record.error = outcome
        self._move(job, outcome[0])
        if self.observer is not None:
            self.observer.finished(*outcome)
        record.end_time = int(time.time())
        if outcome[0] != "completed":
            record.total_bytes = None
        # No longer active, whether or not the write succeeds; until it is written, a
        # wait() still finds the job (and so returns the final record, not the active row).
        self._jobs.pop(record.id, None)
        self._ending[record.id] = job
        try:
            await self._save(record)
        finally:
            del self._ending[record.id]
        self._publish({"event": "download", **history_fields(record)})

    def _remove_part(self, record: JobRecord) -> None:
        """Delete a part file left by an earlier process (a job cancelled while queued)."""
        with contextlib.suppress(OSError):
            fd = self._open_dir(record, create=False)
            try:
                os.unlink(part_name(record.id), dir_fd=fd)
            finally:
                os.close(fd)

    def _open_dir(self, record: JobRecord, create: bool = True) -> int:
        settings = self.settings
        return open_directory(
            settings.root, record.directory, hidden=settings.hidden, create=create
        )

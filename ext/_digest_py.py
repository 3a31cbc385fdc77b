"""One-pass multi-checksum engine, pure-Python reference twin (the spec for ``_digest_c``).

``MultiDigest(algorithms)`` computes any subset of :data:`ALGORITHMS` in one pass over
the data: every ``update`` walks its buffer in cache-sized chunks and feeds each chunk to
every algorithm before moving on, so a chunk is read from memory once.

CRCs (all reflected, init and xorout all ones, values are ints):

==============  ==================  =========================  ======================
name            polynomial          check (``b"123456789"``)    also known as
==============  ==================  =========================  ======================
``crc32``       0x04C11DB7          0xCBF43926                  zip, zlib, PNG
``crc32c``      0x1EDC6F41          0xE3069283                  Castagnoli, iSCSI
``crc64xz``     0x42F0E1EBA9EA3693  0x995DC9BBDF1939FA          CRC-64/ECMA of stores
``crc64nvme``   0xAD93D23594C93659  0xAE8B14860A799888          CRC-64/NVME
==============  ==================  =========================  ======================

Hashes (values are bytes): ``sha1`` and ``sha256`` (hashlib) and ``xxh3_128`` (xxhash).

With two threads (the default when the machine has two CPUs and the split pays) the
hashlib algorithms are shared out between the calling thread and one worker thread so
that both carry about the same load; the worker follows the caller chunk by chunk (at
most :data:`THREAD_LAG` chunks apart) so the chunk is still in cache.  hashlib releases
the GIL while it hashes a large buffer, so the two threads really run at once.

Here the CRCs other than CRC-32 (``zlib.crc32``) are a byte-at-a-time table loop, slow
but plain; ``combine`` multiplies by ``x^(8 len_b) mod P`` with square-and-multiply.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import xxhash

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "ALGORITHMS",
    "CHUNK_SIZE",
    "CRC_ALGORITHMS",
    "CRC_IMPLEMENTATIONS",
    "IMPLEMENTATION",
    "THREAD_LAG",
    "THREAD_MIN_BYTES",
    "MultiDigest",
    "combine",
    "crc",
    "multi_digest",
]

IMPLEMENTATION = "python"
"""The CRC kernel in use (the compiled twin names its SIMD kernel here)."""
CRC_IMPLEMENTATIONS: tuple[str, ...] = ("python",)
"""Every CRC kernel available."""
CRC_ALGORITHMS: tuple[str, ...] = ("crc32", "crc32c", "crc64xz", "crc64nvme")
HASH_ALGORITHMS: tuple[str, ...] = ("sha1", "sha256", "xxh3_128")
ALGORITHMS: tuple[str, ...] = CRC_ALGORITHMS + HASH_ALGORITHMS

CHUNK_SIZE = 256 * 1024
"""Bytes fed to every algorithm before moving on (fits the L2 cache)."""
THREAD_MIN_BYTES = 1024 * 1024
"""Updates shorter than this never use the worker thread (the hand-off would not pay)."""
THREAD_LAG = 2
"""How many chunks the worker thread may trail the calling thread by."""

# Relative cost per byte (SHA-256 = 100), used to split the work between two threads.
_COST = {"sha1": 90, "sha256": 100, "xxh3_128": 5}
_CRC_COST = 5
_READ_COST = 25  # update_from_fd: the calling thread's reads, per byte
_THREADED = frozenset({"sha1", "sha256"})  # hashlib: releases the GIL on large updates


@dataclass(frozen=True)
class _CrcModel:
    """A reflected CRC: polynomial bit-reflected and without its x^width term."""

    width: int
    poly: int
    init: int
    xorout: int
    mask: int = field(init=False)
    table: tuple[int, ...] = field(init=False, repr=False)
    xpow2: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mask = (1 << self.width) - 1
        object.__setattr__(self, "mask", mask)
        table = []
        for byte in range(256):
            reg = byte
            for _ in range(8):
                reg = self.mulx(reg)
            table.append(reg)
        object.__setattr__(self, "table", tuple(table))
        # xpow2[i] = x^(2^i) mod P; 67 entries cover x^(8 * len) for len < 2**64.
        powers = [self.mulx(1 << (self.width - 1))]
        for _ in range(66):
            powers.append(self.mulmod(powers[-1], powers[-1]))
        object.__setattr__(self, "xpow2", tuple(powers))

    def mulx(self, reg: int) -> int:
        """``reg * x mod P`` in the reflected form (bit k = coefficient of x^(width-1-k))."""
        return (reg >> 1) ^ (self.poly if reg & 1 else 0)

    def mulmod(self, a: int, b: int) -> int:
        """``a * b mod P``, both reflected."""
        result = 0
        for k in range(self.width):
            result = self.mulx(result)
            if (a >> k) & 1:
                result ^= b
        return result

    def update(self, crc: int, data: memoryview) -> int:
        """CRC of (the data whose CRC is ``crc``) followed by ``data``."""
        table = self.table
        reg = crc ^ self.xorout
        for byte in data:
            reg = table[(reg ^ byte) & 0xFF] ^ (reg >> 8)
        return reg ^ self.xorout


_MODELS: dict[str, _CrcModel] = {
    "crc32": _CrcModel(32, 0xEDB88320, 0xFFFFFFFF, 0xFFFFFFFF),
    "crc32c": _CrcModel(32, 0x82F63B78, 0xFFFFFFFF, 0xFFFFFFFF),
    "crc64xz": _CrcModel(64, 0xC96C5795D7870F42, (1 << 64) - 1, (1 << 64) - 1),
    "crc64nvme": _CrcModel(64, 0x9A6C9329AC4BC9B5, (1 << 64) - 1, (1 << 64) - 1),
}


def _crc_update(name: str, value: int, data: memoryview) -> int:
    if name == "crc32":
        return zlib.crc32(data, value)
    return _MODELS[name].update(value, data)


def _model(algorithm: str) -> _CrcModel:
    model = _MODELS.get(algorithm)
    if model is None:
        raise ValueError(f"unknown CRC algorithm {algorithm!r}; expected one of {CRC_ALGORITHMS}")
    return model


def _byte_view(data: Buffer) -> memoryview:
    """A flat unsigned-byte view of ``data`` without copying; TypeError if impossible."""
    view = memoryview(data)
    if not view.c_contiguous:
        raise TypeError("digest input must be a C-contiguous buffer")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _check_crc_value(algorithm: str, name: str, value: int) -> int:
    model = _model(algorithm)
    value = int(value)
    if not 0 <= value <= model.mask:
        raise ValueError(f"{name} must be in 0..{model.mask:#x} for {algorithm}")
    return value


def crc(algorithm: str, data: Buffer, initial: int = 0) -> int:
    """One-shot CRC of ``data``; ``initial`` is the CRC of any data before it.

    ``initial=0`` is the CRC of no data for every supported CRC, so
    ``crc(a, y, crc(a, x)) == crc(a, x + y)``.
    """
    value = _check_crc_value(algorithm, "initial", initial)
    return _crc_update(algorithm, value, _byte_view(data))


def combine(algorithm: str, crc_a: int, crc_b: int, len_b: int) -> int:
    """The CRC of A+B from ``crc_a = crc(A)``, ``crc_b = crc(B)`` and ``len_b = len(B)``.

    Costs O(log len_b) products in GF(2)[x]/P; ``len_b`` may be up to ``2**64 - 1``.
    """
    model = _model(algorithm)
    crc_a = _check_crc_value(algorithm, "crc_a", crc_a)
    crc_b = _check_crc_value(algorithm, "crc_b", crc_b)
    len_b = int(len_b)
    if not 0 <= len_b < 1 << 64:
        raise ValueError("len_b must be in 0..2**64-1")
    # reg(A+B) = (reg(A) ^ init) * x^(8 len_b) + reg(B), with crc = reg ^ xorout.
    acc = crc_a ^ model.xorout ^ model.init
    power = 3  # x^(8 * 2^i) = x^(2^(i + 3))
    while len_b:
        if len_b & 1:
            acc = model.mulmod(acc, model.xpow2[power])
        len_b >>= 1
        power += 1
    return acc ^ crc_b


def _new_hash(name: str) -> Any:
    if name == "xxh3_128":
        return xxhash.xxh3_128()
    return hashlib.new(name)


def _normalize(algorithms: Iterable[str] | str) -> tuple[str, ...]:
    names = (algorithms,) if isinstance(algorithms, str) else tuple(algorithms)
    unknown = [name for name in names if name not in ALGORITHMS]
    if unknown:
        raise ValueError(f"unknown digest algorithm(s) {unknown}; expected some of {ALGORITHMS}")
    if not names:
        raise ValueError("MultiDigest needs at least one algorithm")
    return tuple(dict.fromkeys(names))


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _split(names: tuple[str, ...], threads: int) -> frozenset[str]:
    """The hash algorithms the worker thread takes (empty: stay on one thread).

    Greedy balance: the CRCs and non-threadable hashes stay on the calling thread,
    then each hashlib algorithm, costliest first, goes to the less loaded side.
    The split is used only if it cuts the slower side to under 90% of the total.
    """
    if threads < 2:
        return frozenset()
    main = sum(_CRC_COST if n in _MODELS else _COST[n] for n in names if n not in _THREADED)
    worker = 0
    taken: set[str] = set()
    for name in sorted((n for n in names if n in _THREADED), key=lambda n: -_COST[n]):
        if worker < main:
            worker += _COST[name]
            taken.add(name)
        else:
            main += _COST[name]
    if not taken or max(main, worker) * 10 >= (main + worker) * 9:
        return frozenset()
    return frozenset(taken)


def _split_reading(names: tuple[str, ...], threads: int) -> frozenset[str]:
    """The algorithms the worker thread takes in ``update_from_fd`` (empty: one thread).

    As :func:`_split`, except that the calling thread also reads the file
    (``_READ_COST``), and that the CRCs, as one group, may go to the worker too (the
    compiled twin runs them on either thread without the GIL).  Each hashlib algorithm
    and the CRC group, costliest first, go to the less loaded side; the split is used
    only if the slower side is under 90% of the total.
    """
    if threads < 2 or not _THREADED.intersection(names):
        return frozenset()
    crcs = tuple(n for n in names if n in _MODELS)
    main = _READ_COST + sum(_COST[n] for n in names if n not in _THREADED and n not in _MODELS)
    movable: list[tuple[tuple[str, ...], int]] = [((n,), _COST[n]) for n in names if n in _THREADED]
    if crcs:
        movable.append((crcs, _CRC_COST * len(crcs)))
    worker = 0
    taken: set[str] = set()
    for group, cost in sorted(movable, key=lambda item: -item[1]):
        if worker < main:
            worker += cost
            taken.update(group)
        else:
            main += cost
    if not taken or max(main, worker) * 10 >= (main + worker) * 9:
        return frozenset()
    return frozenset(taken)


_executor_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=max(2, _cpu_count()), thread_name_prefix="slipstream-digest"
            )
        return _executor


def _run_split(
    chunks: list[memoryview], feed_main: Callable[[memoryview], None], worker: list[Any]
) -> None:
    """Feed ``chunks`` to ``feed_main`` here and to the ``worker`` hashes on a pool thread.

    The worker handles chunk i only after this thread has reached it, and this thread
    waits before chunk i until the worker has finished chunk i - THREAD_LAG.
    """
    reached = threading.Semaphore(0)
    finished = threading.Semaphore(0)
    stop = threading.Event()  # set by the caller: drop the remaining chunks
    failed = threading.Event()  # set by the worker when it raised

    def work() -> None:
        try:
            for chunk in chunks:
                reached.acquire()
                if stop.is_set():
                    return
                for hasher in worker:
                    hasher.update(chunk)
                finished.release()
        except BaseException:
            failed.set()
            finished.release(len(chunks))  # never leave the caller waiting
            raise

    future = _pool().submit(work)
    try:
        for index, chunk in enumerate(chunks):
            reached.release()
            if index >= THREAD_LAG:
                finished.acquire()
                if failed.is_set():
                    break  # the worker failed: future.result() below raises its error
            feed_main(chunk)
    except BaseException:
        stop.set()  # the worker drops the rest; this update fails anyway
        reached.release(len(chunks))
        raise
    finally:
        future.result()


class MultiDigest:
    """Incremental digest of one byte stream under several algorithms at once.

    ``algorithms`` is any subset of :data:`ALGORITHMS` (or one name); ``threads`` is
    1, 2 or None (two when the machine has two CPUs and the split pays).  One object
    must not be updated from several threads at once.
    """

    __slots__ = ("_algorithms", "_crcs", "_hashes", "_length", "_threads", "_worker")

    def __init__(
        self, algorithms: Iterable[str] | str = ALGORITHMS, *, threads: int | None = None
    ) -> None:
        names = _normalize(algorithms)
        if threads is None:
            threads = 2 if _cpu_count() >= 2 else 1
        if threads not in (1, 2):
            raise ValueError("threads must be 1, 2 or None")
        self._algorithms = names
        self._threads = threads
        self._crcs = {name: 0 for name in names if name in _MODELS}
        self._hashes = {name: _new_hash(name) for name in names if name not in _MODELS}
        self._worker = _split(names, threads)
        self._length = 0

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithm names, in the order given (duplicates dropped)."""
        return self._algorithms

    @property
    def length(self) -> int:
        """Number of bytes fed so far."""
        return self._length

    @property
    def threads(self) -> int:
        """1 or 2: how many threads ``update`` may use."""
        return self._threads

    def update(self, data: Buffer) -> None:
        """Feed ``data`` (any C-contiguous buffer: bytes, bytearray, memoryview, mmap)."""
        view = _byte_view(data)
        size = len(view)
        chunks = [view[offset : offset + CHUNK_SIZE] for offset in range(0, size, CHUNK_SIZE)]
        if self._worker and size >= THREAD_MIN_BYTES:
            mine = [h for n, h in self._hashes.items() if n not in self._worker]
            theirs = [h for n, h in self._hashes.items() if n in self._worker]
            _run_split(chunks, lambda chunk: self._feed(chunk, mine), theirs)
        else:
            hashes = list(self._hashes.values())
            for chunk in chunks:
                self._feed(chunk, hashes)
        self._length += size

    def update_from_fd(self, fd: int, offset: int, length: int) -> int:
        """Read bytes ``[offset, offset + length)`` of the file ``fd`` (``preadv``) and
        feed them, as :meth:`update` would; the bytes fed (fewer only where the file
        ends).  The compiled twin overlaps the reading with the hashing on two threads
        (see :func:`_split_reading`); here it reads a chunk, then feeds it."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        view = memoryview(bytearray(min(CHUNK_SIZE, max(length, 1))))
        fed = 0
        while fed < length:
            want = min(len(view), length - fed)
            got = os.preadv(fd, [view[:want]], offset + fed)
            if got:
                self.update(view[:got])
                fed += got
            if got < want:
                break
        return fed

    def _feed(self, chunk: memoryview, hashes: list[Any]) -> None:
        crcs = self._crcs
        for name, value in crcs.items():
            crcs[name] = _crc_update(name, value, chunk)
        for hasher in hashes:
            hasher.update(chunk)

    def digest(self) -> dict[str, int | bytes]:
        """Current values: CRCs as ints, hashes as bytes, keyed by algorithm name."""
        out: dict[str, int | bytes] = {}
        for name in self._algorithms:
            out[name] = self._crcs[name] if name in self._crcs else self._hashes[name].digest()
        return out

    def hexdigest(self) -> dict[str, str]:
        """Current values as lower-case hex (CRCs zero-padded to their width)."""
        out: dict[str, str] = {}
        for name in self._algorithms:
            if name in self._crcs:
                out[name] = format(self._crcs[name], f"0{_MODELS[name].width // 4}x")
            else:
                out[name] = self._hashes[name].hexdigest()
        return out

    def copy(self) -> MultiDigest:
        """An independent digest with the same state."""
        clone = MultiDigest.__new__(MultiDigest)
        clone._algorithms = self._algorithms
        clone._threads = self._threads
        clone._crcs = dict(self._crcs)
        clone._hashes = {name: hasher.copy() for name, hasher in self._hashes.items()}
        clone._worker = self._worker
        clone._length = self._length
        return clone

    def __repr__(self) -> str:
        return f"MultiDigest({list(self._algorithms)!r}, length={self._length})"


def multi_digest(
    data: Buffer, algorithms: Iterable[str] | str = ALGORITHMS, *, threads: int | None = None
) -> dict[str, int | bytes]:
    """One-shot ``MultiDigest(algorithms, threads=threads)`` over ``data``."""
    digest = MultiDigest(algorithms, threads=threads)
    digest.update(data)
    return digest.digest()

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""One-pass multi-checksum engine, compiled twin of ``_digest_py`` (same API and values).

The CRCs run in C (``csrc/crc.c``) without the GIL: one generic reflected-CRC kernel
serves all four, folding with carry-less multiplies (AVX-512 or AVX2 VPCLMULQDQ, else
128-bit PCLMULQDQ, chosen at run time) and a slicing-by-8 table path elsewhere.  The
folding constants, tables and combine powers are derived from each polynomial at
import.  SHA-1/SHA-256 go through hashlib and XXH3-128 through xxhash, as in the
Python twin; see ``_digest_py`` for the algorithms, the chunking and the threading.
"""

import hashlib
import os
import threading

import xxhash

from concurrent.futures import ThreadPoolExecutor

from slipstream.buffers import aligned_buffer

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport uint64_t

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


include "_crc.pxi"


CRC_ALGORITHMS = ("crc32", "crc32c", "crc64xz", "crc64nvme")
HASH_ALGORITHMS = ("sha1", "sha256", "xxh3_128")
ALGORITHMS = CRC_ALGORITHMS + HASH_ALGORITHMS

CHUNK_SIZE = 256 * 1024
THREAD_MIN_BYTES = 1024 * 1024
THREAD_LAG = 2

cdef Py_ssize_t _CHUNK = CHUNK_SIZE
cdef Py_ssize_t _NOGIL_MIN = 16 * 1024  # one-shot crc() keeps the GIL below this

_COST = {"sha1": 90, "sha256": 100, "xxh3_128": 5}
_CRC_COST = 5
_READ_COST = 25
_THREADED = frozenset({"sha1", "sha256"})

cdef slip_crc_model _models[4]
cdef int _n_models = 4
_MODEL_INDEX = {name: i for i, name in enumerate(CRC_ALGORITHMS)}
_CRC_NAMES = frozenset(CRC_ALGORITHMS)

slip_crc_model_init(&_models[0], 32, 0xEDB88320, 0xFFFFFFFF, 0xFFFFFFFF)
slip_crc_model_init(&_models[1], 32, 0x82F63B78, 0xFFFFFFFF, 0xFFFFFFFF)
slip_crc_model_init(&_models[2], 64, 0xC96C5795D7870F42, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
slip_crc_model_init(&_models[3], 64, 0x9A6C9329AC4BC9B5, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)

_IMPL_NAMES = {
    SLIP_CRC_TABLE: "table",
    SLIP_CRC_PCLMUL: "pclmul",
    SLIP_CRC_VPCLMUL256: "vpclmul256",
    SLIP_CRC_VPCLMUL512: "vpclmul512",
}
_IMPL_CODES = {name: code for code, name in _IMPL_NAMES.items()}

IMPLEMENTATION = _IMPL_NAMES[slip_crc_best_impl()]
"""The CRC kernel this CPU runs: ``vpclmul512``, ``vpclmul256``, ``pclmul`` or ``table``."""
CRC_IMPLEMENTATIONS = tuple(
    name for code, name in sorted(_IMPL_NAMES.items()) if slip_crc_impl_available(code)
)
"""Every CRC kernel this CPU can run (tests compare them all)."""


cdef int _model_index(algorithm) except -1:
    index = _MODEL_INDEX.get(algorithm)
    if index is None:
        raise ValueError(f"unknown CRC algorithm {algorithm!r}; expected one of {CRC_ALGORITHMS}")
    return index


cdef uint64_t _crc_value(int index, str name, value) except? 0xFFFFFFFFFFFFFFFF:
    value = int(value)
    if not 0 <= value <= _models[index].mask:
        raise ValueError(
            f"{name} must be in 0..{_models[index].mask:#x} for {CRC_ALGORITHMS[index]}"
        )
    return value


cdef int _get_buffer(object data, Py_buffer *buf) except -1:
    try:
        PyObject_GetBuffer(data, buf, PyBUF_SIMPLE)
    except BufferError as exc:
        raise TypeError("digest input must be a C-contiguous buffer") from exc
    return 0


def _byte_view(data):
    """A flat unsigned-byte memoryview of ``data`` (the hashes take slices of it)."""
    view = memoryview(data)
    if not view.c_contiguous:
        raise TypeError("digest input must be a C-contiguous buffer")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


cdef uint64_t _crc_run(int index, int impl, uint64_t value, object data) except? 0:
    cdef Py_buffer buf
    cdef uint64_t reg = value ^ _models[index].xorout
    cdef const unsigned char *p
    cdef size_t n
    _get_buffer(data, &buf)
    try:
        p = <const unsigned char *> buf.buf
        n = <size_t> buf.len
        if n >= <size_t> _NOGIL_MIN:
            with nogil:
                reg = slip_crc_update_with(&_models[index], impl, reg, p, n)
        else:
            reg = slip_crc_update_with(&_models[index], impl, reg, p, n)
    finally:
        PyBuffer_Release(&buf)
    return reg ^ _models[index].xorout


def crc(algorithm, data, initial=0):
    """One-shot CRC of ``data``; ``initial`` is the CRC of any data before it.

    ``initial=0`` is the CRC of no data for every supported CRC, so
    ``crc(a, y, crc(a, x)) == crc(a, x + y)``.
    """
    cdef int index = _model_index(algorithm)
    cdef uint64_t value = _crc_value(index, "initial", initial)
    return _crc_run(index, slip_crc_best_impl(), value, data)


def _crc_with(implementation, algorithm, data, initial=0):
    """``crc`` through one named kernel (see CRC_IMPLEMENTATIONS); for tests and benches."""
    code = _IMPL_CODES.get(implementation)
    if code is None or not slip_crc_impl_available(code):
        raise ValueError(f"CRC implementation {implementation!r} not available here")
    cdef int index = _model_index(algorithm)
    cdef uint64_t value = _crc_value(index, "initial", initial)
    return _crc_run(index, code, value, data)


def combine(algorithm, crc_a, crc_b, len_b):
    """The CRC of A+B from ``crc_a = crc(A)``, ``crc_b = crc(B)`` and ``len_b = len(B)``.

    Costs O(log len_b) products in GF(2)[x]/P; ``len_b`` may be up to ``2**64 - 1``.
    """
    cdef int index = _model_index(algorithm)
    cdef uint64_t a = _crc_value(index, "crc_a", crc_a)
    cdef uint64_t b = _crc_value(index, "crc_b", crc_b)
    length = int(len_b)
    if not 0 <= length < (1 << 64):
        raise ValueError("len_b must be in 0..2**64-1")
    return slip_crc_combine(&_models[index], a, b, <uint64_t> length)


def _new_hash(name):
    if name == "xxh3_128":
        return xxhash.xxh3_128()
    return hashlib.new(name)


def _normalize(algorithms):
    names = (algorithms,) if isinstance(algorithms, str) else tuple(algorithms)
    unknown = [name for name in names if name not in ALGORITHMS]
    if unknown:
        raise ValueError(f"unknown digest algorithm(s) {unknown}; expected some of {ALGORITHMS}")
    if not names:
        raise ValueError("MultiDigest needs at least one algorithm")
    return tuple(dict.fromkeys(names))


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _split(names, threads):
    """The hash algorithms the worker thread takes (see ``_digest_py._split``)."""
    if threads < 2:
        return frozenset()
    main = sum(_CRC_COST if n in _MODEL_INDEX else _COST[n] for n in names if n not in _THREADED)
    worker = 0
    taken = set()
    for name in sorted((n for n in names if n in _THREADED), key=lambda n: -_COST[n]):
        if worker < main:
            worker += _COST[name]
            taken.add(name)
        else:
            main += _COST[name]
    if not taken or max(main, worker) * 10 >= (main + worker) * 9:
        return frozenset()
    return frozenset(taken)


def _split_reading(names, threads):
    """What the worker thread takes in ``update_from_fd`` (see ``_digest_py._split_reading``)."""
    if threads < 2 or not _THREADED.intersection(names):
        return frozenset()
    crcs = tuple(n for n in names if n in _MODEL_INDEX)
    main = _READ_COST + sum(
        _COST[n] for n in names if n not in _THREADED and n not in _MODEL_INDEX
    )
    movable = [((n,), _COST[n]) for n in names if n in _THREADED]
    if crcs:
        movable.append((crcs, _CRC_COST * len(crcs)))
    worker = 0
    taken = set()
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
_executor = None


def _pool():
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=max(2, _cpu_count()), thread_name_prefix="slipstream-digest"
            )
        return _executor


def _run_split(Py_ssize_t count, feed_main, feed_worker, prepare=None):
    """Run ``feed_main(i)`` here and ``feed_worker(i)`` on a pool thread for i < count,
    the worker at most THREAD_LAG chunks behind (see ``_digest_py._run_split``);
    ``prepare(i)`` runs here before the worker may start chunk i (``update_from_fd``
    reads it then)."""
    reached = threading.Semaphore(0)
    finished = threading.Semaphore(0)
    stop = threading.Event()  # set by the caller: drop the remaining chunks
    failed = threading.Event()  # set by the worker when it raised

    def work():
        try:
            for index in range(count):
                reached.acquire()
                if stop.is_set():
                    return
                feed_worker(index)
                finished.release()
        except BaseException:
            failed.set()
            finished.release(count)  # never leave the caller waiting
            raise

    future = _pool().submit(work)
    try:
        for index in range(count):
            if prepare is not None:
                prepare(index)
            reached.release()
            if index >= THREAD_LAG:
                finished.acquire()
                if failed.is_set():
                    break  # the worker failed: future.result() below raises its error
            feed_main(index)
    except BaseException:
        stop.set()  # the worker drops the rest; this update fails anyway
        reached.release(count)
        raise
    finally:
        future.result()


def _read_and_update(digest, fd, offset, length):
    """``update_from_fd`` on one thread: read a chunk, feed it, and so on."""
    view = aligned_buffer(min(_CHUNK, max(length, 1)))
    fed = 0
    while fed < length:
        want = min(len(view), length - fed)
        got = os.preadv(fd, [view[:want]], offset + fed)
        if got:
            digest.update(view[:got])
            fed += got
        if got < want:
            break
    return fed


cdef class MultiDigest:
    """Incremental digest of one byte stream under several algorithms at once.

    ``algorithms`` is any subset of :data:`ALGORITHMS` (or one name); ``threads`` is
    1, 2 or None (two when the machine has two CPUs and the split pays).  One object
    must not be updated from several threads at once.
    """

    cdef tuple _algorithms
    cdef int _threads
    cdef int _ncrc
    cdef int _index[4]
    cdef uint64_t _regs[4]
    cdef dict _hashes
    cdef frozenset _worker
    cdef frozenset _worker_reading
    cdef unsigned long long _length
    cdef const unsigned char *_current  # the buffer being fed by a split update

    def __init__(self, algorithms=ALGORITHMS, *, threads=None):
        names = _normalize(algorithms)
        if threads is None:
            threads = 2 if _cpu_count() >= 2 else 1
        if threads not in (1, 2):
            raise ValueError("threads must be 1, 2 or None")
        self._algorithms = names
        self._threads = threads
        self._ncrc = 0
        for name in names:
            if name in _MODEL_INDEX:
                index = _MODEL_INDEX[name]
                self._index[self._ncrc] = index
                self._regs[self._ncrc] = _models[index].init
                self._ncrc += 1
        self._hashes = {name: _new_hash(name) for name in names if name not in _MODEL_INDEX}
        self._worker = _split(names, threads)
        self._worker_reading = _split_reading(names, threads)
        self._length = 0
        self._current = NULL

    @property
    def algorithms(self):
        """The algorithm names, in the order given (duplicates dropped)."""
        return self._algorithms

    @property
    def length(self):
        """Number of bytes fed so far."""
        return self._length

    @property
    def threads(self):
        """1 or 2: how many threads ``update`` may use."""
        return self._threads

    cdef void _crc_chunk(self, const unsigned char *p, size_t n) noexcept nogil:
        cdef int i
        for i in range(self._ncrc):
            self._regs[i] = slip_crc_update(&_models[self._index[i]], self._regs[i], p, n)

    def update(self, data):
        """Feed ``data`` (any C-contiguous buffer: bytes, bytearray, memoryview, mmap)."""
        cdef Py_buffer buf
        cdef const unsigned char *p
        cdef Py_ssize_t n, offset, size
        _get_buffer(data, &buf)
        try:
            p = <const unsigned char *> buf.buf
            n = buf.len
            if not self._hashes:
                with nogil:
                    offset = 0
                    while offset < n:
                        size = min(_CHUNK, n - offset)
                        self._crc_chunk(p + offset, <size_t> size)
                        offset += size
            elif self._worker and n >= THREAD_MIN_BYTES:
                self._current = p
                try:
                    self._update_split(data, n)
                finally:
                    self._current = NULL
            else:
                view = _byte_view(data)
                hashes = list(self._hashes.values())
                offset = 0
                while offset < n:
                    size = min(_CHUNK, n - offset)
                    with nogil:
                        self._crc_chunk(p + offset, <size_t> size)
                    chunk = view[offset : offset + size]
                    for hasher in hashes:
                        hasher.update(chunk)
                    offset += size
        finally:
            PyBuffer_Release(&buf)
        self._length += n

    def _update_split(self, data, Py_ssize_t n):
        if self._current == NULL:
            raise RuntimeError("_update_split runs only inside update()")
        view = _byte_view(data)
        mine = [h for name, h in self._hashes.items() if name not in self._worker]
        theirs = [h for name, h in self._hashes.items() if name in self._worker]
        chunks = [view[offset : offset + _CHUNK] for offset in range(0, n, _CHUNK)]

        def feed_main(Py_ssize_t index):
            cdef const unsigned char *p = self._current
            cdef Py_ssize_t offset = index * _CHUNK
            cdef Py_ssize_t size = min(_CHUNK, n - offset)
            with nogil:
                self._crc_chunk(p + offset, <size_t> size)
            chunk = chunks[index]
            for hasher in mine:
                hasher.update(chunk)

        def feed_worker(Py_ssize_t index):
            chunk = chunks[index]
            for hasher in theirs:
                hasher.update(chunk)

        _run_split(len(chunks), feed_main, feed_worker)

    def update_from_fd(self, fd, offset, length):
        """Read bytes ``[offset, offset + length)`` of the file ``fd`` (``preadv``) and
        feed them, as :meth:`update` would; the bytes fed (fewer only where the file
        ends).  With two threads the reading overlaps the hashing: the calling thread
        reads each chunk and hashes its share while the worker hashes the chunk before."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        if not (self._worker_reading and length >= THREAD_MIN_BYTES):
            return _read_and_update(self, fd, offset, length)
        count = (length + _CHUNK - 1) // _CHUNK
        ring = [aligned_buffer(_CHUNK) for _ in range(THREAD_LAG + 2)]
        sizes = [0] * count
        ended = [False]
        worker = self._worker_reading
        mine = [h for name, h in self._hashes.items() if name not in worker]
        theirs = [h for name, h in self._hashes.items() if name in worker]
        worker_crcs = self._ncrc > 0 and bool(_CRC_NAMES.intersection(worker))

        def prepare(Py_ssize_t index):
            # the slot was last used by chunk index - len(ring), which both threads are
            # done with: the worker has finished every chunk up to index - THREAD_LAG - 1
            if ended[0]:
                return
            want = min(_CHUNK, length - index * _CHUNK)
            view = ring[index % len(ring)]
            got = os.preadv(fd, [view[:want]], offset + index * _CHUNK)
            sizes[index] = got
            if got < want:
                ended[0] = True

        def feed(Py_ssize_t index, hashes, crcs):
            cdef const unsigned char[::1] data
            cdef Py_ssize_t size = sizes[index]
            if not size:
                return
            chunk = ring[index % len(ring)][:size]
            if crcs:
                data = chunk
                with nogil:
                    self._crc_chunk(&data[0], <size_t> size)
            for hasher in hashes:
                hasher.update(chunk)

        _run_split(
            count,
            lambda index: feed(index, mine, not worker_crcs),
            lambda index: feed(index, theirs, worker_crcs),
            prepare,
        )
        fed = sum(sizes)
        self._length += fed
        return fed

    def digest(self):
        """Current values: CRCs as ints, hashes as bytes, keyed by algorithm name."""
        crcs = self._crc_values()
        return {
            name: crcs[name] if name in crcs else self._hashes[name].digest()
            for name in self._algorithms
        }

    def hexdigest(self):
        """Current values as lower-case hex (CRCs zero-padded to their width)."""
        crcs = self._crc_values()
        out = {}
        for name in self._algorithms:
            if name in crcs:
                out[name] = format(crcs[name], f"0{_models[_MODEL_INDEX[name]].width // 4}x")
            else:
                out[name] = self._hashes[name].hexdigest()
        return out

    cdef dict _crc_values(self):
        cdef int i
        out = {}
        for i in range(self._ncrc):
            out[CRC_ALGORITHMS[self._index[i]]] = self._regs[i] ^ _models[self._index[i]].xorout
        return out

    def copy(self):
        """An independent digest with the same state."""
        cdef MultiDigest clone = MultiDigest.__new__(MultiDigest)
        cdef int i
        clone._algorithms = self._algorithms
        clone._threads = self._threads
        clone._ncrc = self._ncrc
        for i in range(self._ncrc):
            clone._index[i] = self._index[i]
            clone._regs[i] = self._regs[i]
        clone._hashes = {name: hasher.copy() for name, hasher in self._hashes.items()}
        clone._worker = self._worker
        clone._worker_reading = self._worker_reading
        clone._length = self._length
        return clone

    def __repr__(self):
        return f"MultiDigest({list(self._algorithms)!r}, length={self._length})"


def multi_digest(data, algorithms=ALGORITHMS, *, threads=None):
    """One-shot ``MultiDigest(algorithms, threads=threads)`` over ``data``."""
    digest = MultiDigest(algorithms, threads=threads)
    digest.update(data)
    return digest.digest()

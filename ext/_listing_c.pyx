# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""scan_directory, compiled twin of ``_listing_py`` (same API, same results, same errors).

The directory is read (``readdir``) and every non-directory entry ``lstat``\\ ed
(``fstatat`` relative to the open directory, no path joined) with the GIL released,
into a C array; the Python objects are built afterwards, in one pass, with no Python
code run per file.  This is the part of a directory zip's first byte that grows with
the number of files.
"""

from cpython.long cimport PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.object cimport PyObject
from libc cimport errno as c_errno
from libc.errno cimport ENOMEM
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy, strlen

import os

from slipstream.ext._listing_py import PlainRule, Scan

__all__ = ["PlainRule", "Scan", "scan_directory"]


cdef extern from "Python.h":
    PyObject *PyDict_SetDefault(object d, object key, object default) except NULL
    object PyUnicode_DecodeFSDefaultAndSize(const char *s, Py_ssize_t size)
    object PyLong_FromDouble(double value)


cdef extern from "<dirent.h>" nogil:
    ctypedef struct DIR:
        pass

    cdef struct dirent:
        unsigned char d_type
        char d_name[256]

    DIR *fdopendir(int fd)
    dirent *readdir(DIR *d)
    int closedir(DIR *d)
    int dirfd(DIR *d)
    unsigned char DT_DIR
    unsigned char DT_REG
    unsigned char DT_UNKNOWN


cdef extern from "<sys/stat.h>" nogil:
    cdef struct timespec:
        long long tv_sec
        long tv_nsec

    cdef struct stat:
        unsigned long long st_dev
        unsigned long long st_ino
        unsigned int st_mode
        long long st_size
        timespec st_mtim

    int fstatat(int dirfd, const char *path, stat *buf, int flags)
    bint S_ISREG(unsigned int mode)
    bint S_ISDIR(unsigned int mode)


cdef extern from "<fcntl.h>" nogil:
    int c_open "open"(const char *path, int flags)
    int O_RDONLY
    int O_DIRECTORY
    int O_CLOEXEC
    int AT_SYMLINK_NOFOLLOW


cdef extern from "<unistd.h>" nogil:
    int c_close "close"(int fd)


cdef enum:
    KIND_DIRECTORY = 0
    KIND_FILE = 1


cdef struct Item:
    Py_ssize_t name_at  # offset of the name in the names buffer
    Py_ssize_t name_length
    int kind
    uint64_t dev
    uint64_t ino
    int64_t size
    long long sec
    long nsec


cdef struct Listing:
    Item *items
    Py_ssize_t count
    Py_ssize_t capacity
    char *names
    Py_ssize_t names_used
    Py_ssize_t names_capacity


cdef int _grow(Listing *out, Py_ssize_t name_length) noexcept nogil:
    """Room for one more item and its name; ENOMEM if there is none."""
    cdef Py_ssize_t capacity
    cdef void *memory
    if out.count == out.capacity:
        capacity = out.capacity * 2 if out.capacity else 256
        memory = realloc(out.items, capacity * sizeof(Item))
        if memory == NULL:
            return ENOMEM
        out.items = <Item *>memory
        out.capacity = capacity
    if out.names_used + name_length > out.names_capacity:
        capacity = out.names_capacity * 2 if out.names_capacity else 16384
        while capacity < out.names_used + name_length:
            capacity *= 2
        memory = realloc(out.names, capacity)
        if memory == NULL:
            return ENOMEM
        out.names = <char *>memory
        out.names_capacity = capacity
    return 0


cdef int _read_directory(const char *path, Listing *out) noexcept nogil:
    """Fill ``out`` with the subdirectories and readable regular files of ``path``;
    0, or the errno of opening or reading the directory itself."""
    cdef int failure = 0
    cdef int at
    cdef DIR *d
    cdef dirent *item
    cdef stat st
    cdef const char *name
    cdef Py_ssize_t length
    cdef int kind
    cdef Item *slot
    cdef int fd = c_open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd < 0:
        return c_errno.errno
    d = fdopendir(fd)
    if d == NULL:
        failure = c_errno.errno
        c_close(fd)
        return failure
    at = dirfd(d)
    while True:
        c_errno.errno = 0
        item = readdir(d)
        if item == NULL:
            failure = c_errno.errno
            break
        name = item.d_name
        if name[0] == b"." and (name[1] == 0 or (name[1] == b"." and name[2] == 0)):
            continue
        if item.d_type == DT_DIR:
            kind = KIND_DIRECTORY
        elif item.d_type == DT_REG or item.d_type == DT_UNKNOWN:
            if fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) != 0:
                continue  # gone since the directory was read
            if S_ISDIR(st.st_mode):
                kind = KIND_DIRECTORY
            elif S_ISREG(st.st_mode) and st.st_mode & 0o444:
                kind = KIND_FILE
            else:
                continue
        else:
            continue  # a symlink or a special file
        length = <Py_ssize_t>strlen(name)
        failure = _grow(out, length)
        if failure:
            break
        slot = &out.items[out.count]
        slot.name_at = out.names_used
        slot.name_length = length
        slot.kind = kind
        if kind == KIND_FILE:
            slot.dev = st.st_dev
            slot.ino = st.st_ino
            slot.size = st.st_size
            slot.sec = st.st_mtim.tv_sec
            slot.nsec = st.st_mtim.tv_nsec
        memcpy(out.names + out.names_used, name, length)
        out.names_used += length
        out.count += 1
    closedir(d)
    return failure


cdef bint _is_plain(const unsigned char *raw, Py_ssize_t length, const unsigned char *table,
                    tuple prefixes, bytes suffix):
    """As ``_listing_py.is_plain``."""
    cdef Py_ssize_t i, k, n
    cdef const unsigned char *p
    cdef unsigned char c
    if length <= 0 or length > 255 or raw[0] == 0x20:
        return False
    if raw[length - 1] == 0x20 or raw[length - 1] == 0x2E:
        return False
    n = len(suffix)
    if n and n <= length and memcmp(raw + length - n, <const char *>suffix, n) == 0:
        return False
    for prefix in prefixes:
        n = len(<bytes>prefix)
        if n > length:
            continue
        p = <const unsigned char *><bytes>prefix
        for k in range(n):
            c = raw[k]
            if 0x61 <= c <= 0x7A:
                c -= 0x20
            if c != p[k]:
                break
        else:
            return False
    for i in range(length):
        if not table[raw[i]]:
            return False
    return True


cdef inline object _shared(dict shared, object value):
    return <object>PyDict_SetDefault(shared, value, value)


cdef object _mtime_ns(long long sec, long nsec):
    if -9_000_000_000 < sec < 9_000_000_000:
        return PyLong_FromLongLong(sec * 1_000_000_000 + nsec)
    return PyLong_FromLongLong(sec) * 1_000_000_000 + nsec


def scan_directory(
    str path, str prefix, str base, where, dict shared, rule
):
    """As ``_listing_py.scan_directory``."""
    cdef bytes table = rule.table
    cdef tuple prefixes = rule.prefixes
    cdef bytes suffix = rule.suffix
    if len(table) != 256:
        raise ValueError("PlainRule.table must have 256 bytes")
    if where is not None and not isinstance(where, str):
        raise TypeError(f"where must be a str or None, not {type(where).__name__}")
    for prefix_bytes in prefixes:
        if not isinstance(prefix_bytes, bytes):
            raise TypeError("PlainRule.prefixes must hold bytes")
    cdef bytes encoded = os.fsencode(path)
    if b"\0" in encoded:
        raise ValueError("scan_directory: embedded null byte")
    cdef const char *c_path = encoded
    cdef Listing out
    out.items = NULL
    out.count = out.capacity = 0
    out.names = NULL
    out.names_used = out.names_capacity = 0
    cdef int failure
    cdef list directories = []
    cdef list entries = []
    cdef list others = []
    cdef Py_ssize_t i
    cdef Item *slot
    cdef const unsigned char *c_table = <const unsigned char *>table
    try:
        with nogil:
            failure = _read_directory(c_path, &out)
        if failure == ENOMEM:
            raise MemoryError()
        if failure:
            raise OSError(failure, os.strerror(failure), path)
        for i in range(out.count):
            slot = &out.items[i]
            name = PyUnicode_DecodeFSDefaultAndSize(out.names + slot.name_at, slot.name_length)
            if slot.kind == KIND_DIRECTORY:
                directories.append(name)
                continue
            dev = _shared(shared, PyLong_FromUnsignedLongLong(slot.dev))
            size = _shared(shared, PyLong_FromLongLong(slot.size))
            mtime = _shared(shared, PyLong_FromDouble(<double>slot.sec + slot.nsec * 1e-9))
            mtime_ns = _mtime_ns(slot.sec, slot.nsec)
            ino = PyLong_FromUnsignedLongLong(slot.ino)
            if _is_plain(
                <const unsigned char *>out.names + slot.name_at,
                slot.name_length,
                c_table,
                prefixes,
                suffix,
            ):
                entries.append(
                    (
                        prefix + name,
                        base,
                        None if where is None else where + name,
                        dev,
                        ino,
                        size,
                        mtime_ns,
                        mtime,
                    )
                )
            else:
                others.append((name, dev, ino, size, mtime_ns, mtime))
    finally:
        free(out.items)
        free(out.names)
    return Scan(directories, entries, others)

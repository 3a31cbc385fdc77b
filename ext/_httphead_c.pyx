# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""parse_request_head, parse_response_head and header_lines, compiled twin of ``_httphead_py`` (same API, same results).

One pass over the head's bytes with lookup tables for the character classes; Python
objects are made only for what is returned.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcmp, memcpy


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object text, Py_ssize_t *size) except NULL
    bint PyUnicode_IS_ASCII(object text)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    int PyUnicode_KIND(object text)
    void *PyUnicode_DATA(object text)
    Py_UCS4 PyUnicode_READ(int kind, void *data, Py_ssize_t index)

from slipstream.ext._httphead_py import (
    DECLINE,
    MAX_LENGTH_DIGITS,
    METHODS,
    NEED_MORE,
    RequestHead,
    ResponseHead,
)

__all__ = [
    "DECLINE",
    "METHODS",
    "NEED_MORE",
    "RequestHead",
    "ResponseHead",
    "header_lines",
    "parse_request_head",
    "parse_response_head",
]


cdef unsigned char TOKEN[256]
cdef unsigned char TARGET[256]
cdef unsigned char VALUE[256]  # 1: visible or obs-text, 2: space or tab


cdef void _tables():
    cdef int c
    for c in range(256):
        TOKEN[c] = 0
        TARGET[c] = 1 if 0x21 <= c <= 0x7E else 0
        VALUE[c] = 1 if (0x21 <= c <= 0x7E or c >= 0x80) else 0
    for c in b"-!#$%&'*+.^_`|~":
        TOKEN[c] = 1
    for c in range(ord("0"), ord("9") + 1):
        TOKEN[c] = 1
    for c in range(ord("a"), ord("z") + 1):
        TOKEN[c] = 1
        TOKEN[c - 32] = 1
    VALUE[0x20] = 2
    VALUE[0x09] = 2


_tables()

cdef bytes V11 = b"1.1"
cdef bytes V10 = b"1.0"
cdef object _METHODS = METHODS
cdef Py_ssize_t _MAX_DIGITS = MAX_LENGTH_DIGITS
cdef object _RequestHead = RequestHead
cdef object _ResponseHead = ResponseHead


cdef inline bint _named(const unsigned char *p, Py_ssize_t n, const char *lower):
    """Whether the ``n`` bytes at ``p`` are the lower-case name ``lower`` ignoring case."""
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        if lower[i] == 0:
            return False
        c = p[i]
        if 0x41 <= c <= 0x5A:
            c += 32
        if c != <unsigned char>lower[i]:
            return False
    return lower[n] == 0


cdef Py_ssize_t _MORE = -1
cdef Py_ssize_t _DECLINED = -2


cdef Py_ssize_t _head_end(
    const unsigned char *p, Py_ssize_t size, Py_ssize_t start, Py_ssize_t max_head
):
    """Where the head at ``p[start:size]`` ends (past its blank line), once every line
    of it is checked to end in CRLF with no other CR nor LF; ``_MORE`` when it is not
    complete (and not over ``max_head``), ``_DECLINED`` when it is outside the subset."""
    cdef Py_ssize_t i, end
    cdef unsigned char c
    if start >= size:
        return _MORE
    if p[start] < 0x21:  # a leading empty line, or worse: h11's to judge
        return _DECLINED
    # The end of the head, where h11 finds it: the first LF followed by LF or CRLF.
    end = -1
    i = start
    while i < size:
        if p[i] == 0x0A:
            if i + 1 < size and p[i + 1] == 0x0A:
                end = i + 2
                break
            if i + 2 < size and p[i + 1] == 0x0D and p[i + 2] == 0x0A:
                end = i + 3
                break
        i += 1
    if end < 0:
        return _DECLINED if size - start > max_head else _MORE
    if end - start > max_head:
        return _DECLINED
    # Every line ends in CRLF, and there is no other CR nor LF.
    for i in range(start, end):
        c = p[i]
        if c == 0x0D:
            if i + 1 >= end or p[i + 1] != 0x0A:
                return _DECLINED
        elif c == 0x0A:
            if i == start or p[i - 1] != 0x0D:
                return _DECLINED
    if end - start < 4 or p[end - 4] != 0x0D:  # "\r\n\r\n" (not "\n\r\n" alone)
        return _DECLINED
    return end


cdef inline Py_ssize_t _field(
    const unsigned char *p, Py_ssize_t line, Py_ssize_t stop, Py_ssize_t *v0, Py_ssize_t *v1
):
    """The colon of the header line ``[line, stop)``, with its value's bounds (blanks
    trimmed) in ``v0``/``v1``; -1 when it is not a token name, a colon and a plain value."""
    cdef Py_ssize_t colon = line, a, b, k
    while colon < stop and TOKEN[p[colon]]:
        colon += 1
    if colon == line or colon >= stop or p[colon] != 0x3A:
        return -1
    a = colon + 1
    b = stop
    while a < b and VALUE[p[a]] == 2:
        a += 1
    while b > a and VALUE[p[b - 1]] == 2:
        b -= 1
    for k in range(a, b):
        if not VALUE[p[k]]:
            return -1
    v0[0] = a
    v1[0] = b
    return colon


cdef inline bytes _bytes(const unsigned char *p, Py_ssize_t start, Py_ssize_t stop):
    return PyBytes_FromStringAndSize(<const char *>p + start, stop - start)


cdef bytes _lower_bytes(const unsigned char *p, Py_ssize_t start, Py_ssize_t stop):
    """``p[start:stop].lower()`` (ASCII), written into a new object before it is shared.

    The object is made uninitialised (NULL source): CPython hands out shared singletons
    for one-byte (and empty) bytes made from data, which must never be written to."""
    cdef Py_ssize_t n = stop - start
    if n <= 0:
        return b""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef unsigned char *q = <unsigned char *>PyBytes_AS_STRING(out)
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = p[start + i]
        q[i] = c + 32 if 0x41 <= c <= 0x5A else c
    return out


cdef inline const unsigned char *_buffer(object data, Py_ssize_t *size):
    """The bytes and length of ``data``, a ``bytes`` or ``bytearray`` (the caller keeps
    it alive while it reads them)."""
    if type(data) is bytes:
        size[0] = PyBytes_GET_SIZE(data)
        return <const unsigned char *>PyBytes_AS_STRING(data)
    size[0] = PyByteArray_GET_SIZE(data)
    return <const unsigned char *>PyByteArray_AS_STRING(data)


def parse_request_head(data, Py_ssize_t start, Py_ssize_t max_head, Py_ssize_t max_fields):
    """As ``_httphead_py.parse_request_head``."""
    if type(data) is not bytes and type(data) is not bytearray:
        data = bytes(data)
    cdef Py_ssize_t size
    cdef const unsigned char *p = _buffer(data, &size)
    cdef Py_ssize_t i, end, line, stop, colon, v0, v1, k, fields
    cdef Py_ssize_t method_end, target_start, target_end
    cdef int hosts = 0
    cdef long long length = -1
    cdef bint v11
    cdef unsigned char c
    if start < 0:
        raise ValueError("start must not be negative")
    end = _head_end(p, size, start, max_head)
    if end < 0:
        return NEED_MORE if end == _MORE else DECLINE
    stop = end - 4  # the end of the last line's content
    # The request line.
    i = start
    while i < stop and TOKEN[p[i]]:
        i += 1
    method_end = i
    if i >= stop or p[i] != 0x20:
        return DECLINE
    target_start = i + 1
    i = target_start
    while i < stop and TARGET[p[i]]:
        i += 1
    target_end = i
    if target_end == target_start or p[target_start] != 0x2F or i >= stop or p[i] != 0x20:
        return DECLINE
    i += 1
    if i + 8 >= end or p[i + 8] != 0x0D:  # "HTTP/1.x" ends the line
        return DECLINE
    if not (p[i] == 0x48 and p[i + 1] == 0x54 and p[i + 2] == 0x54 and p[i + 3] == 0x50
            and p[i + 4] == 0x2F and p[i + 5] == 0x31 and p[i + 6] == 0x2E):
        return DECLINE
    if p[i + 7] == 0x31:
        v11 = True
    elif p[i + 7] == 0x30:
        v11 = False
    else:
        return DECLINE
    method = _bytes(p, start, method_end)
    if method not in _METHODS:
        return DECLINE
    line = i + 10  # past "HTTP/1.x\r\n"
    headers = []
    fields = 0
    while line < end - 2:  # each header line, up to the blank one
        i = line
        while p[i] != 0x0D:
            i += 1
        colon = _field(p, line, i, &v0, &v1)  # [line, i) is one header line
        fields += 1
        if colon < 0 or fields > max_fields:
            return DECLINE
        k = colon - line
        if _named(p + line, k, b"host"):
            hosts += 1
        elif _named(p + line, k, b"content-length"):
            if length >= 0 or v1 == v0 or v1 - v0 > _MAX_DIGITS:
                return DECLINE
            length = 0
            for k in range(v0, v1):
                c = p[k]
                if not 0x30 <= c <= 0x39:
                    return DECLINE
                length = length * 10 + (c - 0x30)
        elif (
            _named(p + line, k, b"transfer-encoding")
            or _named(p + line, k, b"expect")
            or _named(p + line, k, b"upgrade")
        ):
            return DECLINE
        headers.append((_lower_bytes(p, line, colon), _bytes(p, v0, v1)))
        line = i + 2
    if hosts > 1 or (hosts == 0 and v11):
        return DECLINE
    return _RequestHead(
        method,
        _bytes(p, target_start, target_end),
        V11 if v11 else V10,
        headers,
        length if length > 0 else 0,
        end,
    )


def parse_response_head(data, Py_ssize_t start, Py_ssize_t max_head, Py_ssize_t max_fields):
    """As ``_httphead_py.parse_response_head``."""
    if type(data) is not bytes and type(data) is not bytearray:
        data = bytes(data)
    cdef Py_ssize_t size
    cdef const unsigned char *p = _buffer(data, &size)
    cdef Py_ssize_t i, end, line, colon, v0, v1, k, fields
    cdef long long length = -1
    cdef int status
    cdef unsigned char c
    if start < 0:
        raise ValueError("start must not be negative")
    end = _head_end(p, size, start, max_head)
    if end < 0:
        return NEED_MORE if end == _MORE else DECLINE
    # The status line: "HTTP/1.1 " 3DIGIT " " reason CRLF.
    i = start
    if end - i < 17 or memcmp(p + i, b"HTTP/1.1 ", 9) != 0:
        return DECLINE
    i += 9
    status = 0
    for k in range(3):
        c = p[i + k]
        if not 0x30 <= c <= 0x39:
            return DECLINE
        status = status * 10 + (c - 0x30)
    if status < 200 or status > 599 or status == 204 or status == 304 or p[i + 3] != 0x20:
        return DECLINE
    v0 = i + 4
    i = v0
    while p[i] != 0x0D:
        if not VALUE[p[i]]:
            return DECLINE
        i += 1
    reason = _bytes(p, v0, i)
    line = i + 2
    headers = []
    fields = 0
    while line < end - 2:  # each header line, up to the blank one
        i = line
        while p[i] != 0x0D:
            i += 1
        colon = _field(p, line, i, &v0, &v1)  # [line, i) is one header line
        fields += 1
        if colon < 0 or fields > max_fields:
            return DECLINE
        k = colon - line
        if _named(p + line, k, b"content-length"):
            if length >= 0 or v1 == v0 or v1 - v0 > _MAX_DIGITS:
                return DECLINE
            length = 0
            for k in range(v0, v1):
                c = p[k]
                if not 0x30 <= c <= 0x39:
                    return DECLINE
                length = length * 10 + (c - 0x30)
        elif _named(p + line, k, b"transfer-encoding"):
            return DECLINE
        headers.append((_lower_bytes(p, line, colon), _bytes(p, v0, v1)))
        line = i + 2
    if length < 0:
        return DECLINE  # close-delimited: h11 frames it
    return _ResponseHead(status, reason, headers, length, end)


cdef bint _is_framing(const unsigned char *p, Py_ssize_t n):
    return (
        _named(p, n, b"content-length")
        or _named(p, n, b"transfer-encoding")
        or _named(p, n, b"connection")
    )


cdef bint _has_control(str value):
    """A control character other than tab (C0 or DEL) anywhere in ``value``."""
    cdef int kind = PyUnicode_KIND(value)
    cdef void *data = PyUnicode_DATA(value)
    cdef Py_ssize_t i
    cdef Py_UCS4 c
    for i in range(PyUnicode_GET_LENGTH(value)):
        c = PyUnicode_READ(kind, data, i)
        if (c < 0x20 and c != 0x09) or c == 0x7F:
            return True
    return False


def header_lines(str date, list headers):
    """As ``_httphead_py.header_lines``."""
    cdef Py_ssize_t total, n, k, at
    cdef const char *text
    cdef const unsigned char *name_bytes
    cdef bytes out
    cdef char *q
    for item in headers:
        name = (<tuple?>item)[0]
        if not isinstance(name, str):
            raise TypeError("header names must be str")
        if not PyUnicode_IS_ASCII(name):
            raise ValueError(f"refusing response header name {name!r}")
        name_bytes = <const unsigned char *>PyUnicode_AsUTF8AndSize(name, &n)
        if n == 0 or _is_framing(name_bytes, n):
            raise ValueError(f"refusing response header name {name!r}")
        for k in range(n):
            if not TOKEN[name_bytes[k]]:
                raise ValueError(f"refusing response header name {name!r}")
    for item in headers:
        name, value = <tuple?>item
        if _has_control(<str?>value):
            raise ValueError(f"refusing control characters in header {name}")
    PyUnicode_AsUTF8AndSize(date, &n)
    total = 6 + n + 2  # "Date: " date CRLF
    for name, value in headers:
        PyUnicode_AsUTF8AndSize(name, &n)
        total += n + 2
        PyUnicode_AsUTF8AndSize(value, &n)  # UnicodeEncodeError for a lone surrogate
        total += n + 2
    out = PyBytes_FromStringAndSize(NULL, total)
    q = PyBytes_AS_STRING(out)
    memcpy(q, b"Date: ", 6)
    at = 6
    text = PyUnicode_AsUTF8AndSize(date, &n)
    memcpy(q + at, text, n)
    at += n
    memcpy(q + at, b"\r\n", 2)
    at += 2
    for name, value in headers:
        text = PyUnicode_AsUTF8AndSize(name, &n)
        memcpy(q + at, text, n)
        at += n
        memcpy(q + at, b": ", 2)
        at += 2
        text = PyUnicode_AsUTF8AndSize(value, &n)
        memcpy(q + at, text, n)
        at += n
        memcpy(q + at, b"\r\n", 2)
        at += 2
    return out

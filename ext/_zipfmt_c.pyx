# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Zip record builders, compiled twin of ``_zipfmt_py`` (same API, byte-identical output).

Each record is written field by field, little-endian by explicit byte stores, into a
``bytes`` object allocated at its final size; see ``_zipfmt_py`` for the field layout
and the zip64 rules.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_AsUnsignedLongLong
from cpython.number cimport PyNumber_Index
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

__all__ = [
    "central_directory_header",
    "data_descriptor",
    "dos_datetime",
    "end_of_central_directory",
    "extended_timestamp_extra",
    "local_file_header",
    "needs_zip64",
    "needs_zip64_end",
    "zip64_end_of_central_directory",
    "zip64_end_of_central_directory_locator",
    "zip64_extra",
]

cdef uint64_t U16_MAX = 0xFFFF
cdef uint64_t U32_MAX = 0xFFFFFFFF
cdef uint64_t U64_MAX = 0xFFFFFFFFFFFFFFFF

cdef uint16_t FLAGS = 0x0808
cdef uint16_t METHOD_STORED = 0
cdef uint16_t VERSION_NEEDED = 20
cdef uint16_t VERSION_NEEDED_ZIP64 = 45
cdef uint16_t VERSION_MADE_BY = 0x031E
cdef uint16_t VERSION_MADE_BY_ZIP64 = 0x032D
cdef uint32_t EXTERNAL_ATTRS = 0o100644 << 16

cdef int64_t DOS_EPOCH = 315532800
cdef int64_t DOS_LAST = 4354819199

cdef uint32_t LOCAL_FILE_HEADER_SIGNATURE = 0x04034B50
cdef uint32_t DATA_DESCRIPTOR_SIGNATURE = 0x08074B50
cdef uint32_t CENTRAL_DIRECTORY_HEADER_SIGNATURE = 0x02014B50
cdef uint32_t ZIP64_EOCD_SIGNATURE = 0x06064B50
cdef uint32_t ZIP64_EOCD_LOCATOR_SIGNATURE = 0x07064B50
cdef uint32_t EOCD_SIGNATURE = 0x06054B50

cdef enum:
    LOCAL_FILE_HEADER_SIZE = 30
    CENTRAL_DIRECTORY_HEADER_SIZE = 46
    EXTENDED_TIMESTAMP_SIZE = 9
    ZIP64_EOCD_SIZE = 56
    ZIP64_EOCD_LOCATOR_SIZE = 20
    EOCD_SIZE = 22


# ---- little-endian stores; each returns the position after the field ----

cdef inline uint8_t *put8(uint8_t *p, uint8_t v) noexcept:
    p[0] = v
    return p + 1


cdef inline uint8_t *put16(uint8_t *p, uint16_t v) noexcept:
    p[0] = v & 0xFF
    p[1] = v >> 8
    return p + 2


cdef inline uint8_t *put32(uint8_t *p, uint32_t v) noexcept:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = v >> 24
    return p + 4


cdef inline uint8_t *put64(uint8_t *p, uint64_t v) noexcept:
    p = put32(p, <uint32_t>(v & 0xFFFFFFFF))
    return put32(p, <uint32_t>(v >> 32))


cdef inline uint8_t *putbytes(uint8_t *p, bytes data) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    memcpy(p, PyBytes_AS_STRING(data), n)
    return p + n


cdef inline bytes new_bytes(Py_ssize_t size):
    return PyBytes_FromStringAndSize(NULL, size)


cdef inline uint8_t *start_of(bytes out) noexcept:
    return <uint8_t *>PyBytes_AS_STRING(out)


# ---- argument checks (same exceptions and messages as the Python twin) ----

cdef uint64_t check(object value, uint64_t maximum, str what) except? 0xFFFFFFFFFFFFFFFF:
    value = PyNumber_Index(value)
    cdef uint64_t v
    try:
        v = PyLong_AsUnsignedLongLong(value)
    except OverflowError:
        raise ValueError(f"{what} {value} outside 0..{maximum}") from None
    if v > maximum:
        raise ValueError(f"{what} {value} outside 0..{maximum}")
    return v


cdef int64_t clamp(object value, int64_t low, int64_t high) except? -1:
    cdef int overflow = 0
    cdef long long v = PyLong_AsLongLongAndOverflow(PyNumber_Index(value), &overflow)
    if overflow > 0:
        return high
    if overflow < 0:
        return low
    if v < low:
        return low
    if v > high:
        return high
    return v


cdef int check_name(bytes name) except -1:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name)
    if n > 0xFFFF:
        raise ValueError(f"name is {n} bytes, the limit is {0xFFFF}")
    return 0


# ---- DOS date and time (UTC) ----

cdef void civil(int64_t seconds, uint16_t *dos_time, uint16_t *dos_date) noexcept:
    # seconds is within DOS_EPOCH..DOS_LAST, so all the arithmetic below is non-negative.
    cdef int64_t days = seconds // 86400
    cdef int64_t rest = seconds - days * 86400
    cdef int64_t hour = rest // 3600
    cdef int64_t minute = (rest // 60) % 60
    cdef int64_t second = rest % 60
    # Civil date from days since 1970-01-01, counting years from March 1st so that the
    # leap day ends the year; 146097 days make a 400-year era.
    cdef int64_t z = days + 719468
    cdef int64_t era = z // 146097
    cdef int64_t day_of_era = z - era * 146097
    cdef int64_t year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    cdef int64_t year = year_of_era + era * 400
    cdef int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    cdef int64_t month_index = (5 * day_of_year + 2) // 153  # 0 = March
    cdef int64_t day = day_of_year - (153 * month_index + 2) // 5 + 1
    cdef int64_t month = month_index + 3 if month_index < 10 else month_index - 9
    if month <= 2:
        year += 1
    dos_time[0] = <uint16_t>((hour << 11) | (minute << 5) | (second // 2))
    dos_date[0] = <uint16_t>(((year - 1980) << 9) | (month << 5) | day)


cdef int dos_fields(object unix_seconds, uint16_t *dos_time, uint16_t *dos_date) except -1:
    civil(clamp(unix_seconds, DOS_EPOCH, DOS_LAST), dos_time, dos_date)
    return 0


# ---- the records ----

cdef inline bint overflows(uint64_t size, uint64_t offset) noexcept:
    return size >= U32_MAX or offset >= U32_MAX


def needs_zip64(size, offset):
    """True iff a member of ``size`` bytes whose local header is at ``offset`` is zip64."""
    return size >= 0xFFFFFFFF or offset >= 0xFFFFFFFF


def needs_zip64_end(entries, cd_size, cd_offset):
    """True iff the archive needs the zip64 end-of-central-directory record and locator."""
    return entries >= 0xFFFF or cd_size >= 0xFFFFFFFF or cd_offset >= 0xFFFFFFFF


def dos_datetime(unix_seconds):
    """``(dos_time, dos_date)`` of a UTC unix time, clamped to the DOS range 1980..2107."""
    cdef uint16_t dos_time = 0, dos_date = 0
    dos_fields(unix_seconds, &dos_time, &dos_date)
    return dos_time, dos_date


cdef uint8_t *put_zip64_extra(uint8_t *p, uint64_t *fields, int count) noexcept:
    cdef int i
    p = put16(p, 0x0001)  # header id
    p = put16(p, <uint16_t>(8 * count))  # data size
    for i in range(count):
        p = put64(p, fields[i])
    return p


cdef uint8_t *put_extended_timestamp(uint8_t *p, uint32_t mtime) noexcept:
    p = put16(p, 0x5455)  # header id
    p = put16(p, 5)  # data size
    p = put8(p, 1)  # flags: modification time present
    return put32(p, mtime)  # modification time


def zip64_extra(*fields):
    """The zip64 extended-information extra field (0x0001) holding 1-3 8-byte values.

    Pass the values in APPNOTE order (uncompressed size, compressed size, local header
    offset), keeping only those whose header field holds ``0xFFFFFFFF``.
    """
    cdef Py_ssize_t count = len(fields)
    if not 1 <= count <= 3:
        raise ValueError(f"zip64 extra takes 1 to 3 fields, not {count}")
    cdef uint64_t values[3]
    cdef Py_ssize_t i
    for i in range(count):
        values[i] = check(fields[i], U64_MAX, "zip64 field")
    cdef bytes out = new_bytes(4 + 8 * count)
    put_zip64_extra(start_of(out), values, <int>count)
    return out


def extended_timestamp_extra(mtime):
    """The extended-timestamp extra field (0x5455): modification time only."""
    cdef uint32_t m = <uint32_t>clamp(mtime, 0, 0xFFFFFFFF)
    cdef bytes out = new_bytes(EXTENDED_TIMESTAMP_SIZE)
    put_extended_timestamp(start_of(out), m)
    return out


def local_file_header(bytes name not None, mtime, *, bint zip64):
    """Local file header of a streamed STORED member (CRC and sizes in the descriptor)."""
    check_name(name)
    cdef uint16_t dos_time = 0, dos_date = 0
    dos_fields(mtime, &dos_time, &dos_date)
    cdef uint32_t m = <uint32_t>clamp(mtime, 0, 0xFFFFFFFF)
    cdef uint64_t zeros[2]
    zeros[0] = 0
    zeros[1] = 0
    cdef Py_ssize_t extra_len = EXTENDED_TIMESTAMP_SIZE + (20 if zip64 else 0)
    cdef Py_ssize_t name_len = PyBytes_GET_SIZE(name)
    cdef uint32_t sizes = <uint32_t>U32_MAX if zip64 else 0
    cdef bytes out = new_bytes(LOCAL_FILE_HEADER_SIZE + name_len + extra_len)
    cdef uint8_t *p = start_of(out)
    p = put32(p, LOCAL_FILE_HEADER_SIGNATURE)
    p = put16(p, VERSION_NEEDED_ZIP64 if zip64 else VERSION_NEEDED)  # version needed
    p = put16(p, FLAGS)  # general purpose flags
    p = put16(p, METHOD_STORED)  # compression method
    p = put16(p, dos_time)  # last mod file time
    p = put16(p, dos_date)  # last mod file date
    p = put32(p, 0)  # crc-32: in the data descriptor
    p = put32(p, sizes)  # compressed size
    p = put32(p, sizes)  # uncompressed size
    p = put16(p, <uint16_t>name_len)  # file name length
    p = put16(p, <uint16_t>extra_len)  # extra field length
    p = putbytes(p, name)
    if zip64:
        p = put_zip64_extra(p, zeros, 2)
    put_extended_timestamp(p, m)
    return out


def data_descriptor(crc32, size, *, bint zip64):
    """Data descriptor (with signature); 8-byte sizes when the member is zip64."""
    cdef uint32_t crc = <uint32_t>check(crc32, U32_MAX, "crc32")
    cdef uint64_t n
    cdef bytes out
    cdef uint8_t *p
    if zip64:
        n = check(size, U64_MAX, "size")
        out = new_bytes(24)
        p = put32(start_of(out), DATA_DESCRIPTOR_SIGNATURE)
        p = put32(p, crc)  # crc-32
        p = put64(p, n)  # compressed size
        put64(p, n)  # uncompressed size
    else:
        n = check(size, U32_MAX - 1, "size of a non-zip64 member")
        out = new_bytes(16)
        p = put32(start_of(out), DATA_DESCRIPTOR_SIGNATURE)
        p = put32(p, crc)  # crc-32
        p = put32(p, <uint32_t>n)  # compressed size
        put32(p, <uint32_t>n)  # uncompressed size
    return out


def central_directory_header(
    bytes name not None, mtime, crc32, size, local_header_offset, *, zip64=None
):
    """Central directory header of a STORED member.

    ``zip64`` is whether the member's local header was zip64; by default it is
    ``needs_zip64(size, local_header_offset)``, and it may only be forced to ``True``
    (a member that overflows is always zip64).  It sets the version fields; the zip64
    extra holds exactly the fields that overflow, whatever ``zip64`` says.
    """
    check_name(name)
    cdef uint32_t crc = <uint32_t>check(crc32, U32_MAX, "crc32")
    cdef uint64_t n = check(size, U64_MAX, "size")
    cdef uint64_t offset = check(local_header_offset, U64_MAX, "local header offset")
    cdef bint overflow = overflows(n, offset)
    cdef bint is_zip64
    if zip64 is None:
        is_zip64 = overflow
    else:
        is_zip64 = zip64
        if not is_zip64 and overflow:
            raise ValueError("a member whose size or offset is >= 0xFFFFFFFF must be zip64")
    cdef uint64_t fields[3]
    cdef int count = 0
    if n >= U32_MAX:
        fields[0] = n
        fields[1] = n
        count = 2
    if offset >= U32_MAX:
        fields[count] = offset
        count += 1
    cdef uint16_t dos_time = 0, dos_date = 0
    cdef uint32_t m = <uint32_t>clamp(mtime, 0, 0xFFFFFFFF)
    dos_fields(mtime, &dos_time, &dos_date)
    cdef Py_ssize_t extra_len = EXTENDED_TIMESTAMP_SIZE + (4 + 8 * count if count else 0)
    cdef Py_ssize_t name_len = PyBytes_GET_SIZE(name)
    cdef bytes out = new_bytes(CENTRAL_DIRECTORY_HEADER_SIZE + name_len + extra_len)
    cdef uint8_t *p = start_of(out)
    p = put32(p, CENTRAL_DIRECTORY_HEADER_SIGNATURE)
    p = put16(p, VERSION_MADE_BY_ZIP64 if is_zip64 else VERSION_MADE_BY)  # version made by
    p = put16(p, VERSION_NEEDED_ZIP64 if is_zip64 else VERSION_NEEDED)  # version needed
    p = put16(p, FLAGS)  # general purpose flags
    p = put16(p, METHOD_STORED)  # compression method
    p = put16(p, dos_time)  # last mod file time
    p = put16(p, dos_date)  # last mod file date
    p = put32(p, crc)  # crc-32
    p = put32(p, <uint32_t>(U32_MAX if n >= U32_MAX else n))  # compressed size
    p = put32(p, <uint32_t>(U32_MAX if n >= U32_MAX else n))  # uncompressed size
    p = put16(p, <uint16_t>name_len)  # file name length
    p = put16(p, <uint16_t>extra_len)  # extra field length
    p = put16(p, 0)  # file comment length
    p = put16(p, 0)  # disk number start
    p = put16(p, 0)  # internal file attributes
    p = put32(p, EXTERNAL_ATTRS)  # external file attributes
    p = put32(p, <uint32_t>(U32_MAX if offset >= U32_MAX else offset))  # local header offset
    p = putbytes(p, name)
    if count:
        p = put_zip64_extra(p, fields, count)
    put_extended_timestamp(p, m)
    return out


def zip64_end_of_central_directory(entries, cd_size, cd_offset):
    """Zip64 end-of-central-directory record (single disk)."""
    cdef uint64_t e = check(entries, U64_MAX, "entries")
    cdef uint64_t s = check(cd_size, U64_MAX, "central directory size")
    cdef uint64_t o = check(cd_offset, U64_MAX, "central directory offset")
    cdef bytes out = new_bytes(ZIP64_EOCD_SIZE)
    cdef uint8_t *p = put32(start_of(out), ZIP64_EOCD_SIGNATURE)
    p = put64(p, ZIP64_EOCD_SIZE - 12)  # size of the rest of this record
    p = put16(p, VERSION_MADE_BY_ZIP64)  # version made by
    p = put16(p, VERSION_NEEDED_ZIP64)  # version needed
    p = put32(p, 0)  # number of this disk
    p = put32(p, 0)  # disk where the central directory starts
    p = put64(p, e)  # entries on this disk
    p = put64(p, e)  # total entries
    p = put64(p, s)  # size of the central directory
    put64(p, o)  # offset of the central directory
    return out


def zip64_end_of_central_directory_locator(zip64_eocd_offset):
    """Zip64 end-of-central-directory locator pointing at the zip64 record."""
    cdef uint64_t o = check(zip64_eocd_offset, U64_MAX, "zip64 end of central directory offset")
    cdef bytes out = new_bytes(ZIP64_EOCD_LOCATOR_SIZE)
    cdef uint8_t *p = put32(start_of(out), ZIP64_EOCD_LOCATOR_SIGNATURE)
    p = put32(p, 0)  # disk with the zip64 end of central directory
    p = put64(p, o)  # offset of the zip64 end of central directory
    put32(p, 1)  # total number of disks
    return out


def end_of_central_directory(entries, cd_size, cd_offset):
    """End-of-central-directory record; overflowing values become 0xFFFF/0xFFFFFFFF."""
    cdef uint64_t e = check(entries, U64_MAX, "entries")
    cdef uint64_t s = check(cd_size, U64_MAX, "central directory size")
    cdef uint64_t o = check(cd_offset, U64_MAX, "central directory offset")
    if e > U16_MAX:
        e = U16_MAX
    if s > U32_MAX:
        s = U32_MAX
    if o > U32_MAX:
        o = U32_MAX
    cdef bytes out = new_bytes(EOCD_SIZE)
    cdef uint8_t *p = put32(start_of(out), EOCD_SIGNATURE)
    p = put16(p, 0)  # number of this disk
    p = put16(p, 0)  # disk where the central directory starts
    p = put16(p, <uint16_t>e)  # entries on this disk
    p = put16(p, <uint16_t>e)  # total entries
    p = put32(p, <uint32_t>s)  # size of the central directory
    p = put32(p, <uint32_t>o)  # offset of the central directory
    put16(p, 0)  # comment length
    return out

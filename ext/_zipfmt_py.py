"""Zip record builders, pure-Python reference twin (the spec for ``_zipfmt_c``).

These are the records of a *streamed STORED* zip (method 0, PKWARE APPNOTE 6.3.x):
every local header carries CRC 0 and sizes 0 with general-purpose flag bit 3 (a data
descriptor follows the data) and bit 11 (names are UTF-8).  A layout is::

    [local header][data][data descriptor] ... [central directory]
    [zip64 end of central directory + locator, when needed][end of central directory]

Zip64 rules (every layout uses the same ones):

* a **member** is zip64 iff ``needs_zip64(size, local_header_offset)``, i.e. its size
  or the offset of its local header is ``>= 0xFFFFFFFF``.  Its local header then has
  version-needed 45, sizes ``0xFFFFFFFF`` and a zip64 extra holding two zero sizes, and
  its data descriptor has 8-byte sizes (the two always agree: pass the same ``zip64``).
  Its central directory header carries a zip64 extra with only the overflowing fields,
  in APPNOTE order (uncompressed size, compressed size, local header offset);
* the **archive** needs the zip64 end-of-central-directory record and its locator iff
  ``needs_zip64_end(entries, cd_size, cd_offset)``, i.e. ``entries >= 0xFFFF`` or the
  central directory's size or offset is ``>= 0xFFFFFFFF``; the classic record then
  holds ``0xFFFF`` / ``0xFFFFFFFF`` markers for the values that overflow.

Times are UTC: the DOS date/time fields come from ``dos_datetime`` (clamped to
1980-01-01 00:00:00 .. 2107-12-31 23:59:58, odd seconds rounded down) and every header
also carries an extended-timestamp extra (0x5455) with the mtime clamped to
``0..0xFFFFFFFF``.  Names are bytes (already UTF-8) shorter than 65536 bytes.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from operator import index

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

U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF

FLAGS = 0x0808  # bit 3: sizes and CRC in a data descriptor; bit 11: UTF-8 name
METHOD_STORED = 0
VERSION_NEEDED = 20  # 2.0: plain stored file
VERSION_NEEDED_ZIP64 = 45  # 4.5: zip64 records
VERSION_MADE_BY = 0x031E  # high byte 3: UNIX attributes; low byte 30: spec 3.0
VERSION_MADE_BY_ZIP64 = 0x032D  # UNIX, spec 4.5
EXTERNAL_ATTRS = 0o100644 << 16  # UNIX mode in the high 16 bits: regular file, rw-r--r--

DOS_EPOCH = 315532800  # 1980-01-01T00:00:00Z
DOS_LAST = 4354819199  # 2107-12-31T23:59:59Z

ZIP64_EXTRA_ID = 0x0001
EXTENDED_TIMESTAMP_ID = 0x5455

LOCAL_FILE_HEADER = struct.Struct(
    "<"
    "I"  # local file header signature 0x04034b50
    "H"  # version needed to extract
    "H"  # general purpose bit flag
    "H"  # compression method
    "H"  # last mod file time (DOS)
    "H"  # last mod file date (DOS)
    "I"  # crc-32 (0: in the data descriptor)
    "I"  # compressed size (0, or 0xFFFFFFFF when zip64)
    "I"  # uncompressed size (0, or 0xFFFFFFFF when zip64)
    "H"  # file name length
    "H"  # extra field length
)
LOCAL_FILE_HEADER_SIGNATURE = 0x04034B50

DATA_DESCRIPTOR = struct.Struct(
    "<"
    "I"  # data descriptor signature 0x08074b50
    "I"  # crc-32
    "I"  # compressed size
    "I"  # uncompressed size
)
DATA_DESCRIPTOR_ZIP64 = struct.Struct(
    "<"
    "I"  # data descriptor signature 0x08074b50
    "I"  # crc-32
    "Q"  # compressed size
    "Q"  # uncompressed size
)
DATA_DESCRIPTOR_SIGNATURE = 0x08074B50

CENTRAL_DIRECTORY_HEADER = struct.Struct(
    "<"
    "I"  # central file header signature 0x02014b50
    "H"  # version made by
    "H"  # version needed to extract
    "H"  # general purpose bit flag
    "H"  # compression method
    "H"  # last mod file time (DOS)
    "H"  # last mod file date (DOS)
    "I"  # crc-32
    "I"  # compressed size (0xFFFFFFFF: in the zip64 extra)
    "I"  # uncompressed size (0xFFFFFFFF: in the zip64 extra)
    "H"  # file name length
    "H"  # extra field length
    "H"  # file comment length
    "H"  # disk number start
    "H"  # internal file attributes
    "I"  # external file attributes
    "I"  # relative offset of local header (0xFFFFFFFF: in the zip64 extra)
)
CENTRAL_DIRECTORY_HEADER_SIGNATURE = 0x02014B50

EXTRA_HEADER = struct.Struct(
    "<"
    "H"  # header id
    "H"  # data size (bytes after this header)
)
ZIP64_FIELD = struct.Struct(
    "<Q"  # one 8-byte zip64 value
)

EXTENDED_TIMESTAMP = struct.Struct(
    "<"
    "H"  # header id 0x5455
    "H"  # data size: 5
    "B"  # flags: bit 0, modification time present
    "I"  # modification time, unix seconds
)

ZIP64_END_OF_CENTRAL_DIRECTORY = struct.Struct(
    "<"
    "I"  # zip64 end of central dir signature 0x06064b50
    "Q"  # size of the rest of this record (44)
    "H"  # version made by
    "H"  # version needed to extract
    "I"  # number of this disk
    "I"  # disk where the central directory starts
    "Q"  # entries in the central directory on this disk
    "Q"  # total entries in the central directory
    "Q"  # size of the central directory
    "Q"  # offset of the start of the central directory
)
ZIP64_END_OF_CENTRAL_DIRECTORY_SIGNATURE = 0x06064B50

ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR = struct.Struct(
    "<"
    "I"  # zip64 end of central dir locator signature 0x07064b50
    "I"  # disk with the zip64 end of central directory record
    "Q"  # offset of the zip64 end of central directory record
    "I"  # total number of disks
)
ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR_SIGNATURE = 0x07064B50

END_OF_CENTRAL_DIRECTORY = struct.Struct(
    "<"
    "I"  # end of central dir signature 0x06054b50
    "H"  # number of this disk
    "H"  # disk where the central directory starts
    "H"  # entries in the central directory on this disk (0xFFFF: see zip64)
    "H"  # total entries in the central directory (0xFFFF: see zip64)
    "I"  # size of the central directory (0xFFFFFFFF: see zip64)
    "I"  # offset of the start of the central directory (0xFFFFFFFF: see zip64)
    "H"  # comment length
)
END_OF_CENTRAL_DIRECTORY_SIGNATURE = 0x06054B50


def _check(value: int, maximum: int, what: str) -> int:
    value = index(value)
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} {value} outside 0..{maximum}")
    return value


def _check_name(name: bytes) -> None:
    if not isinstance(name, bytes):
        raise TypeError("name must be bytes (UTF-8 encoded)")
    if len(name) > U16_MAX:
        raise ValueError(f"name is {len(name)} bytes, the limit is {U16_MAX}")


def needs_zip64(size: int, offset: int) -> bool:
    """True iff a member of ``size`` bytes whose local header is at ``offset`` is zip64."""
    return size >= U32_MAX or offset >= U32_MAX


def needs_zip64_end(entries: int, cd_size: int, cd_offset: int) -> bool:
    """True iff the archive needs the zip64 end-of-central-directory record and locator."""
    return entries >= U16_MAX or cd_size >= U32_MAX or cd_offset >= U32_MAX


def dos_datetime(unix_seconds: int) -> tuple[int, int]:
    """``(dos_time, dos_date)`` of a UTC unix time, clamped to the DOS range 1980..2107."""
    seconds = min(max(index(unix_seconds), DOS_EPOCH), DOS_LAST)
    t = datetime.fromtimestamp(seconds, UTC)
    dos_time = (t.hour << 11) | (t.minute << 5) | (t.second // 2)
    dos_date = ((t.year - 1980) << 9) | (t.month << 5) | t.day
    return dos_time, dos_date


def zip64_extra(*fields: int) -> bytes:
    """The zip64 extended-information extra field (0x0001) holding 1-3 8-byte values.

    Pass the values in APPNOTE order (uncompressed size, compressed size, local header
    offset), keeping only those whose header field holds ``0xFFFFFFFF``.
    """
    if not 1 <= len(fields) <= 3:
        raise ValueError(f"zip64 extra takes 1 to 3 fields, not {len(fields)}")
    body = b"".join(ZIP64_FIELD.pack(_check(f, U64_MAX, "zip64 field")) for f in fields)
    return EXTRA_HEADER.pack(ZIP64_EXTRA_ID, len(body)) + body


def extended_timestamp_extra(mtime: int) -> bytes:
    """The extended-timestamp extra field (0x5455): modification time only."""
    clamped = min(max(index(mtime), 0), U32_MAX)
    return EXTENDED_TIMESTAMP.pack(EXTENDED_TIMESTAMP_ID, 5, 1, clamped)


def local_file_header(name: bytes, mtime: int, *, zip64: bool) -> bytes:
    """Local file header of a streamed STORED member (CRC and sizes in the descriptor)."""
    _check_name(name)
    dos_time, dos_date = dos_datetime(mtime)
    extra = extended_timestamp_extra(mtime)
    if zip64:
        extra = zip64_extra(0, 0) + extra
    sizes = U32_MAX if zip64 else 0
    head = LOCAL_FILE_HEADER.pack(
        LOCAL_FILE_HEADER_SIGNATURE,
        VERSION_NEEDED_ZIP64 if zip64 else VERSION_NEEDED,
        FLAGS,
        METHOD_STORED,
        dos_time,
        dos_date,
        0,
        sizes,
        sizes,
        len(name),
        len(extra),
    )
    return head + name + extra


def data_descriptor(crc32: int, size: int, *, zip64: bool) -> bytes:
    """Data descriptor (with signature); 8-byte sizes when the member is zip64."""
    crc32 = _check(crc32, U32_MAX, "crc32")
    if zip64:
        size = _check(size, U64_MAX, "size")
        return DATA_DESCRIPTOR_ZIP64.pack(DATA_DESCRIPTOR_SIGNATURE, crc32, size, size)
    size = _check(size, U32_MAX - 1, "size of a non-zip64 member")
    return DATA_DESCRIPTOR.pack(DATA_DESCRIPTOR_SIGNATURE, crc32, size, size)


def central_directory_header(
    name: bytes,
    mtime: int,
    crc32: int,
    size: int,
    local_header_offset: int,
    *,
    zip64: bool | None = None,
) -> bytes:
    """Central directory header of a STORED member.

    ``zip64`` is whether the member's local header was zip64; by default it is
    ``needs_zip64(size, local_header_offset)``, and it may only be forced to ``True``
    (a member that overflows is always zip64).  It sets the version fields; the zip64
    extra holds exactly the fields that overflow, whatever ``zip64`` says.
    """
    _check_name(name)
    crc32 = _check(crc32, U32_MAX, "crc32")
    size = _check(size, U64_MAX, "size")
    offset = _check(local_header_offset, U64_MAX, "local header offset")
    overflow = needs_zip64(size, offset)
    if zip64 is None:
        zip64 = overflow
    elif not zip64 and overflow:
        raise ValueError("a member whose size or offset is >= 0xFFFFFFFF must be zip64")
    fields: list[int] = []
    if size >= U32_MAX:
        fields += [size, size]
    if offset >= U32_MAX:
        fields.append(offset)
    extra = extended_timestamp_extra(mtime)
    if fields:
        extra = zip64_extra(*fields) + extra
    dos_time, dos_date = dos_datetime(mtime)
    head = CENTRAL_DIRECTORY_HEADER.pack(
        CENTRAL_DIRECTORY_HEADER_SIGNATURE,
        VERSION_MADE_BY_ZIP64 if zip64 else VERSION_MADE_BY,
        VERSION_NEEDED_ZIP64 if zip64 else VERSION_NEEDED,
        FLAGS,
        METHOD_STORED,
        dos_time,
        dos_date,
        crc32,
        min(size, U32_MAX),
        min(size, U32_MAX),
        len(name),
        len(extra),
        0,
        0,
        0,
        EXTERNAL_ATTRS,
        min(offset, U32_MAX),
    )
    return head + name + extra


def zip64_end_of_central_directory(entries: int, cd_size: int, cd_offset: int) -> bytes:
    """Zip64 end-of-central-directory record (single disk)."""
    entries = _check(entries, U64_MAX, "entries")
    cd_size = _check(cd_size, U64_MAX, "central directory size")
    cd_offset = _check(cd_offset, U64_MAX, "central directory offset")
    return ZIP64_END_OF_CENTRAL_DIRECTORY.pack(
        ZIP64_END_OF_CENTRAL_DIRECTORY_SIGNATURE,
        ZIP64_END_OF_CENTRAL_DIRECTORY.size - 12,
        VERSION_MADE_BY_ZIP64,
        VERSION_NEEDED_ZIP64,
        0,
        0,
        entries,
        entries,
        cd_size,
        cd_offset,
    )


def zip64_end_of_central_directory_locator(zip64_eocd_offset: int) -> bytes:
    """Zip64 end-of-central-directory locator pointing at the zip64 record."""
    offset = _check(zip64_eocd_offset, U64_MAX, "zip64 end of central directory offset")
    return ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR.pack(
        ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR_SIGNATURE, 0, offset, 1
    )


def end_of_central_directory(entries: int, cd_size: int, cd_offset: int) -> bytes:
    """End-of-central-directory record; overflowing values become 0xFFFF/0xFFFFFFFF."""
    entries = min(_check(entries, U64_MAX, "entries"), U16_MAX)
    cd_size = min(_check(cd_size, U64_MAX, "central directory size"), U32_MAX)
    cd_offset = min(_check(cd_offset, U64_MAX, "central directory offset"), U32_MAX)
    return END_OF_CENTRAL_DIRECTORY.pack(
        END_OF_CENTRAL_DIRECTORY_SIGNATURE, 0, 0, entries, entries, cd_size, cd_offset, 0
    )

"""The three kinds of body segment shared by both SegmentMap twins.

A response body is an ordered list of segments; each knows its ``length`` and can
produce a sub-segment with ``sub(offset, length)`` without copying bytes.
"""

from __future__ import annotations

from typing import Any


class Literal:
    """Bytes we generated ourselves (headers, boundaries, zip records)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data).cast("B") if not isinstance(data, bytes) else data

    @property
    def length(self) -> int:
        return len(self.data)

    def sub(self, offset: int, length: int) -> Literal:
        """The bytes ``[offset, offset + length)`` of this literal, as a view (no copy)."""
        if offset == 0 and length == len(self.data):
            return self
        return Literal(memoryview(self.data)[offset : offset + length])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Literal) and bytes(self.data) == bytes(other.data)

    def __hash__(self) -> int:
        return hash(bytes(self.data))

    def __repr__(self) -> str:
        return f"Literal({bytes(self.data[:32])!r}{'...' if len(self.data) > 32 else ''})"


class FileSlice:
    """``length`` bytes of a stored file starting at ``offset``.

    ``source`` is whatever the storage layer uses to reach the file: an object with
    ``fileno()`` (sent with ``os.sendfile``) or a filesystem path.
    """

    __slots__ = ("length", "offset", "source")

    def __init__(self, source: Any, offset: int, length: int) -> None:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        self.source = source
        self.offset = offset
        self.length = length

    def sub(self, offset: int, length: int) -> FileSlice:
        return FileSlice(self.source, self.offset + offset, length)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FileSlice)
            and self.source == other.source
            and self.offset == other.offset
            and self.length == other.length
        )

    def __hash__(self) -> int:
        return hash((id(self.source), self.offset, self.length))

    def __repr__(self) -> str:
        return f"FileSlice({self.source!r}, {self.offset}, {self.length})"


class UpstreamSlice:
    """``length`` bytes of a remote object at ``uri``, starting at ``offset``."""

    __slots__ = ("length", "offset", "uri")

    def __init__(self, uri: str, offset: int, length: int) -> None:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        self.uri = uri
        self.offset = offset
        self.length = length

    def sub(self, offset: int, length: int) -> UpstreamSlice:
        return UpstreamSlice(self.uri, self.offset + offset, length)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, UpstreamSlice)
            and self.uri == other.uri
            and self.offset == other.offset
            and self.length == other.length
        )

    def __hash__(self) -> int:
        return hash((self.uri, self.offset, self.length))

    def __repr__(self) -> str:
        return f"UpstreamSlice({self.uri!r}, {self.offset}, {self.length})"


Segment = Literal | FileSlice | UpstreamSlice

"""A fake :class:`~slipstream.http.representation.StreamedSource` for reply-function tests:
its parts are plain ``(start, stop)`` values, and it records which it was asked for."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Part:
    """The body of bytes ``[start, stop)`` of a :class:`RecordingSource`."""

    start: int
    stop: int

    @property
    def total(self) -> int:
        return self.stop - self.start


@dataclass
class RecordingSource:
    """A streamed representation of ``total`` bytes; ``made`` lists the parts asked for."""

    total: int
    made: list[tuple[int, int]] = field(default_factory=list)

    def part(self, start: int, stop: int) -> Part:
        self.made.append((start, stop))
        return Part(start, stop)

"""The reference bytes of a zip layout: its pieces rendered one after the other.

What a streamed zip body must equal, byte for byte, whatever it does to get there (reads
ahead, background CRCs): the pieces of :meth:`~slipstream.zip.plan.ZipLayout.pieces` in
order, member data from the contents and CRCs from ``zlib``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

from slipstream.zip.plan import ZipLayout


def render(
    layout: ZipLayout,
    start: int,
    stop: int,
    data: Callable[[int, int, int], bytes],
    crc: Callable[[int], int],
) -> bytes:
    """The bytes ``[start, stop)`` of the zip, from the pieces the layout lists.

    ``data(i, skip, length)`` gives member data; ``crc(i)`` member ``i``'s CRC.
    """
    out: list[bytes] = []
    for piece in layout.pieces(start, stop):
        assert piece.length > 0
        if piece.kind == "data":
            out.append(data(piece.index, piece.skip, piece.length))
            continue
        if piece.kind == "header":
            whole = layout.header_bytes(piece.index)
        elif piece.kind == "descriptor":
            whole = layout.descriptor_bytes(piece.index, crc(piece.index))
        else:
            assert piece.index == -1
            whole = layout.central_bytes([crc(i) for i in range(len(layout))])
        assert piece.skip + piece.length <= len(whole)
        out.append(whole[piece.skip : piece.skip + piece.length])
    return b"".join(out)


def full_zip(layout: ZipLayout, contents: Sequence[bytes]) -> bytes:
    """The whole zip of ``layout`` whose members hold ``contents``."""
    crcs = [zlib.crc32(c) for c in contents]
    return render(layout, 0, layout.total, lambda i, s, n: contents[i][s : s + n], crcs.__getitem__)

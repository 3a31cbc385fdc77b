"""Independent references the tests check slipstream's checksums against."""

from __future__ import annotations

REFLECTED_POLYS = {
    "crc32": (32, 0xEDB88320),
    "crc32c": (32, 0x82F63B78),
    "crc64xz": (64, 0xC96C5795D7870F42),
    "crc64nvme": (64, 0x9A6C9329AC4BC9B5),
}
"""Width and reflected polynomial of every CRC (init and xorout all ones)."""


def reference_crc(name: str, data: bytes) -> int:
    """Bit-at-a-time CRC ``name`` of ``data``: slow, plain, and independent of the engine."""
    width, poly = REFLECTED_POLYS[name]
    mask = (1 << width) - 1
    reg = mask
    for byte in data:
        reg ^= byte
        for _ in range(8):
            reg = (reg >> 1) ^ (poly if reg & 1 else 0)
    return reg ^ mask

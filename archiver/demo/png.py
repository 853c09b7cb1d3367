"""A tiny deterministic PNG writer (stdlib only), for the sample clinic's images."""

from __future__ import annotations

import random
import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_png(width: int, height: int, seed: int) -> bytes:
    """A width x height RGB image of soft colour bands; the same seed gives the same bytes."""
    rng = random.Random(seed)
    base = [rng.randrange(60, 200) for _ in range(3)]
    step = [rng.randrange(1, 6) for _ in range(3)]
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            band = (x // 8 + y // 8) % 4
            rows.extend((base[c] + step[c] * band * 10) % 256 for c in range(3))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _chunk(b"IEND", b"")
    )

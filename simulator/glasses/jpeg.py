"""A synthetic photo for the virtual glasses: a genuine baseline JPEG, no imaging library.

Why our own encoder: the daemon's photo path checks JPEG structure (SOI, segments, a
frame header before the scan, EOI), so the glasses must send real JPEGs, and the
project has no imaging library. One grey channel, 8x8 DCT, one quantisation table and
Huffman tables of our own - DC categories as 4-bit codes, every AC run/size symbol as
an 8-bit code - valid per ITU T.81, so any baseline decoder opens the result. The
picture is a gradient with seeded noise.
"""

from __future__ import annotations

import struct
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["synthetic_jpeg"]

_ZIGZAG: Final = np.array(
    [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
        12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
        35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
        58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    ]
)  # fmt: skip

# DC: categories 0..11, all 4-bit codes. AC: EOB, ZRL and run/size (run 0..15, size 1..10),
# 162 symbols, all 8-bit codes (canonical: codes are assigned in symbol order).
_DC_SYMBOLS: Final = list(range(12))
_AC_SYMBOLS: Final = [0x00, 0xF0] + [(r << 4) | s for r in range(16) for s in range(1, 11)]
_DC_CODES: Final = {sym: (i, 4) for i, sym in enumerate(_DC_SYMBOLS)}
_AC_CODES: Final = {sym: (i, 8) for i, sym in enumerate(_AC_SYMBOLS)}


def _dct_matrix() -> npt.NDArray[np.float64]:
    k = np.arange(8)
    m: npt.NDArray[np.float64] = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.sqrt(
        2 / 8
    )
    m[0, :] = np.sqrt(1 / 8)
    return m


_DCT: Final = _dct_matrix()


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self._acc = 0
        self._n = 0

    def write(self, code: int, length: int) -> None:
        self._acc = (self._acc << length) | (code & ((1 << length) - 1))
        self._n += length
        while self._n >= 8:
            self._n -= 8
            byte = (self._acc >> self._n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:  # byte stuffing: 0xFF in entropy data is followed by 0x00
                self.out.append(0x00)
        self._acc &= (1 << self._n) - 1

    def finish(self) -> bytes:
        if self._n:
            self.write((1 << (8 - self._n)) - 1, 8 - self._n)  # pad with one-bits
        return bytes(self.out)


def _category(value: int) -> tuple[int, int]:
    """JPEG magnitude category and the value's extra bits."""
    size = int(abs(value)).bit_length()
    bits = value if value >= 0 else value + (1 << size) - 1
    return size, bits


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _dht(table_class: int, table_id: int, symbols: list[int], length: int) -> bytes:
    counts = [0] * 16
    counts[length - 1] = len(symbols)
    return bytes([(table_class << 4) | table_id, *counts, *symbols])


def _write_block(writer: _BitWriter, quant: npt.NDArray[np.int64], prev_dc: int) -> int:
    """Huffman-code one quantised block (zigzag order); returns its DC for the next."""
    dc = int(np.clip(quant[0], -2047, 2047))
    size, bits = _category(dc - prev_dc)
    if size > 11:
        dc, size, bits = prev_dc, 0, 0
    writer.write(*_DC_CODES[size])
    if size:
        writer.write(bits, size)
    run = 0
    for ac in quant[1:]:
        value = int(ac)
        if value == 0:
            run += 1
            continue
        while run > 15:
            writer.write(*_AC_CODES[0xF0])
            run -= 16
        size, bits = _category(value)
        writer.write(*_AC_CODES[(run << 4) | size])
        writer.write(bits, size)
        run = 0
    if run:
        writer.write(*_AC_CODES[0x00])
    return dc


def synthetic_jpeg(
    width: int = 160,
    height: int = 120,
    *,
    seed: int = 0,
    quality_step: int = 6,
    detail: float = 1.0,
) -> bytes:
    """A grey baseline JPEG of `width` x `height` pixels (multiples of 8 are not needed)."""
    if not (8 <= width <= 4096 and 8 <= height <= 4096):
        raise ValueError("synthetic_jpeg: width and height must be 8..4096")
    rng = np.random.default_rng(seed)
    bw, bh = -(-width // 8), -(-height // 8)
    y, x = np.mgrid[0 : bh * 8, 0 : bw * 8]
    image = 128 + 60 * np.sin(x / (9 + seed % 7)) * np.cos(y / 13) + (x - y) * 0.2
    image += rng.normal(0, 18 * detail, image.shape)
    image = np.clip(image, 0, 255) - 128.0

    q = np.full(64, max(1, min(255, quality_step)), dtype=np.int32)
    writer = _BitWriter()
    prev_dc = 0
    for by in range(bh):
        for bx in range(bw):
            block = image[by * 8 : by * 8 + 8, bx * 8 : bx * 8 + 8]
            coeffs = (_DCT @ block @ _DCT.T).reshape(64)[_ZIGZAG]
            quant = np.rint(coeffs / q).astype(np.int64)
            quant = np.clip(quant, -1023, 1023)  # keep AC sizes within 1..10
            prev_dc = _write_block(writer, quant, prev_dc)
    scan = writer.finish()

    jfif = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = bytes([0x00]) + bytes(int(v) for v in q)  # 8-bit table 0 (zigzag order)
    sof = struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0])
    dht = _dht(0, 0, _DC_SYMBOLS, 4) + _dht(1, 0, _AC_SYMBOLS, 8)
    sos = bytes([1, 1, 0x00, 0, 63, 0])
    return b"".join(
        (
            b"\xff\xd8",
            _segment(0xE0, jfif),
            _segment(0xDB, dqt),
            _segment(0xC0, sof),
            _segment(0xC4, dht),
            _segment(0xDA, sos),
            scan,
            b"\xff\xd9",
        )
    )

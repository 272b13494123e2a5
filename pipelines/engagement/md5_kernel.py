"""The MD5 kernel behind :mod:`pipelines.engagement.post_ids`, compiled by numba (imported only when numba is
installed and a block is large enough to be worth it). Top-level functions, so the compiled code is cached
on disk (``__pycache__``, or numba's user cache when the package folder is read-only) and later processes
load it instead of compiling again."""

from __future__ import annotations

import math

import numba
import numpy as np

S = np.array([7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4, dtype=np.uint32)
K = np.array([int(abs(math.sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64)], dtype=np.uint32)
G = np.array([i if i < 16 else (5 * i + 1) % 16 if i < 32 else (3 * i + 5) % 16 if i < 48 else (7 * i) % 16
              for i in range(64)], dtype=np.int64)
MASK = np.uint32(0xFFFFFFFF)  # numba widens uint32 sums: every step is masked back to 32 bits


@numba.njit(cache=True, inline="always")
def _block(state, buf, m, s_, k_, g_):
    for j in range(16):
        m[j] = (np.uint32(buf[4 * j]) | (np.uint32(buf[4 * j + 1]) << np.uint32(8))
                | (np.uint32(buf[4 * j + 2]) << np.uint32(16)) | (np.uint32(buf[4 * j + 3]) << np.uint32(24)))
    a, b, c, d = state[0], state[1], state[2], state[3]
    for i in range(64):
        if i < 16:
            f = (b & c) | (~b & d)
        elif i < 32:
            f = (d & b) | (~d & c)
        elif i < 48:
            f = b ^ c ^ d
        else:
            f = c ^ (b | ~d)
        f = (f + a + k_[i] + m[g_[i]]) & MASK
        a, d, c = d, c, b
        b = (b + (((f << s_[i]) | (f >> (np.uint32(32) - s_[i]))) & MASK)) & MASK
    state[0] = (state[0] + a) & MASK
    state[1] = (state[1] + b) & MASK
    state[2] = (state[2] + c) & MASK
    state[3] = (state[3] + d) & MASK


@numba.njit(cache=True)
def first8(data, offsets, out, s_, k_, g_):
    """``out[r]`` = the first 8 bytes of MD5(data[offsets[r]:offsets[r + 1]]), little-endian, shifted right by one."""
    buf = np.empty(64, np.uint8)
    m = np.empty(16, np.uint32)
    state = np.empty(4, np.uint32)
    for r in range(len(offsets) - 1):
        lo, hi = offsets[r], offsets[r + 1]
        state[0], state[1] = np.uint32(0x67452301), np.uint32(0xEFCDAB89)
        state[2], state[3] = np.uint32(0x98BADCFE), np.uint32(0x10325476)
        pos = lo
        while hi - pos >= 64:
            buf[:] = data[pos: pos + 64]
            _block(state, buf, m, s_, k_, g_)
            pos += 64
        rem = hi - pos
        buf[:rem] = data[pos:hi]
        buf[rem] = 0x80
        if rem + 1 > 56:
            buf[rem + 1:] = 0
            _block(state, buf, m, s_, k_, g_)
            buf[:] = 0
        else:
            buf[rem + 1: 56] = 0
        bits = np.uint64(hi - lo) * np.uint64(8)
        for j in range(8):
            buf[56 + j] = np.uint8((bits >> np.uint64(8 * j)) & np.uint64(0xFF))
        _block(state, buf, m, s_, k_, g_)
        out[r] = np.int64((np.uint64(state[0]) | (np.uint64(state[1]) << np.uint64(32))) >> np.uint64(1))


def first8_of(data: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    first8(data, offsets, out, S, K, G)

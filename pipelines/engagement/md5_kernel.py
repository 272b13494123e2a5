"""The MD5 kernel behind :mod:`pipelines.engagement.post_ids`, compiled by numba (imported only when numba is
installed and a block is large enough to be worth it). Top-level functions, so the compiled code is cached
on disk (``__pycache__``, or numba's user cache when the package folder is read-only) and later processes
load it instead of compiling again.

The key of a row (``time, author, title`` joined by U+001F) is laid out in a scratch buffer straight from the
Arrow buffers, so no joined column is built; the rounds run on local 32-bit words, four loops of sixteen steps
without a branch (LLVM unrolls them), two rows side by side. The functions release the GIL: the converter
hashes one block while it parses the next.
"""

from __future__ import annotations

import math

import numba
import numpy as np

S = np.array([7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4, dtype=np.uint64)
K = np.array([int(abs(math.sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64)], dtype=np.uint64)
G = np.array([i if i < 16 else (5 * i + 1) % 16 if i < 32 else (3 * i + 5) % 16 if i < 48 else (7 * i) % 16
              for i in range(64)], dtype=np.int64)
MASK = np.uint64(0xFFFFFFFF)  # the words are held in 64 bits: every step is masked back to 32
SEPARATOR = 0x1F


@numba.njit(cache=True, nogil=True, inline="always")
def _step(a, b, f, i, m):
    """One MD5 step: ``b + rotl(a + f + K[i] + m[G[i]], S[i])``."""
    x = (a + (f & MASK) + K[i] + np.uint64(m[G[i]])) & MASK
    s = S[i]
    return (b + (((x << s) | (x >> (np.uint64(32) - s))) & MASK)) & MASK


@numba.njit(cache=True, nogil=True, inline="always")
def _compress(m, a0, b0, c0, d0):
    """The state after one 64-byte block (``m``: its sixteen little-endian words)."""
    a, b, c, d = a0, b0, c0, d0
    for i in range(16):
        a, d, c, b = d, c, b, _step(a, b, (b & c) | (~b & d), i, m)
    for i in range(16, 32):
        a, d, c, b = d, c, b, _step(a, b, (d & b) | (~d & c), i, m)
    for i in range(32, 48):
        a, d, c, b = d, c, b, _step(a, b, b ^ c ^ d, i, m)
    for i in range(48, 64):
        a, d, c, b = d, c, b, _step(a, b, c ^ (b | (~d & MASK)), i, m)
    return (a0 + a) & MASK, (b0 + b) & MASK, (c0 + c) & MASK, (d0 + d) & MASK


@numba.njit(cache=True, nogil=True, inline="always")
def _compress2(m, n, a0, b0, c0, d0, e0, f0, g0, h0):
    """:func:`_compress` of two messages' blocks at once (``m`` into ``a..d``, ``n`` into ``e..h``): each MD5 is
    one long chain of dependent steps, and two chains side by side keep the CPU's units busy (a quarter less
    time than one after the other, measured)."""
    a, b, c, d, e, f, g, h = a0, b0, c0, d0, e0, f0, g0, h0
    for i in range(16):
        a, d, c, b = d, c, b, _step(a, b, (b & c) | (~b & d), i, m)
        e, h, g, f = h, g, f, _step(e, f, (f & g) | (~f & h), i, n)
    for i in range(16, 32):
        a, d, c, b = d, c, b, _step(a, b, (d & b) | (~d & c), i, m)
        e, h, g, f = h, g, f, _step(e, f, (h & f) | (~h & g), i, n)
    for i in range(32, 48):
        a, d, c, b = d, c, b, _step(a, b, b ^ c ^ d, i, m)
        e, h, g, f = h, g, f, _step(e, f, f ^ g ^ h, i, n)
    for i in range(48, 64):
        a, d, c, b = d, c, b, _step(a, b, c ^ (b | (~d & MASK)), i, m)
        e, h, g, f = h, g, f, _step(e, f, g ^ (f | (~h & MASK)), i, n)
    return ((a0 + a) & MASK, (b0 + b) & MASK, (c0 + c) & MASK, (d0 + d) & MASK,
            (e0 + e) & MASK, (f0 + f) & MASK, (g0 + g) & MASK, (h0 + h) & MASK)


@numba.njit(cache=True, nogil=True, inline="always")
def _pad(buf, size):
    """Pad the message ``buf[:size]`` as MD5 wants (0x80, zeros, the bit length); its number of 64-byte blocks."""
    total = (size + 8) // 64 * 64 + 64
    buf[size] = 0x80
    buf[size + 1: total - 8] = 0
    bits = np.uint64(size) * np.uint64(8)
    for j in range(8):
        buf[total - 8 + j] = np.uint8((bits >> np.uint64(8 * j)) & np.uint64(0xFF))
    return total // 64


@numba.njit(cache=True, nogil=True, inline="always")
def _id(a, b):
    """The post id of a final MD5 state: its first 8 bytes, little-endian, shifted right by one."""
    return np.int64((a | (b << np.uint64(32))) >> np.uint64(1))


@numba.njit(cache=True, nogil=True)
def _first8_pair(w1, k1, w2, k2):
    """The ids of two padded messages (``w1``, ``w2``: their words; ``k1``, ``k2``: their blocks, ``k2`` may be 0)."""
    a, b, c, d = np.uint64(0x67452301), np.uint64(0xEFCDAB89), np.uint64(0x98BADCFE), np.uint64(0x10325476)
    e, f, g, h = a, b, c, d
    both = min(k1, k2)
    for block in range(both):
        a, b, c, d, e, f, g, h = _compress2(w1[16 * block: 16 * block + 16], w2[16 * block: 16 * block + 16],
                                            a, b, c, d, e, f, g, h)
    for block in range(both, k1):
        a, b, c, d = _compress(w1[16 * block: 16 * block + 16], a, b, c, d)
    for block in range(both, k2):
        e, f, g, h = _compress(w2[16 * block: 16 * block + 16], e, f, g, h)
    return _id(a, b), _id(e, f)


@numba.njit(cache=True, nogil=True)
def _decimal(value, buf, pos):
    """Write ``value`` in decimal at ``buf[pos:]``; the position after it."""
    digits = np.empty(20, np.uint8)
    magnitude = np.uint64(-value) if value < 0 else np.uint64(value)
    n = 0
    while True:
        digits[n] = np.uint8(48 + magnitude % np.uint64(10))
        magnitude //= np.uint64(10)
        n += 1
        if magnitude == 0:
            break
    if value < 0:
        buf[pos] = 45
        pos += 1
    for j in range(n):
        buf[pos + j] = digits[n - 1 - j]
    return pos + n


@numba.njit(cache=True, nogil=True)
def _key(r, times, a_data, a_off, t_data, t_off, buf):
    """Lay out row ``r``'s key (``time, author, title`` joined by U+001F) in ``buf`` and pad it; its blocks."""
    pos = _decimal(times[r], buf, 0)
    buf[pos] = SEPARATOR
    lo, hi = a_off[r], a_off[r + 1]
    buf[pos + 1: pos + 1 + hi - lo] = a_data[lo:hi]
    pos += 1 + hi - lo
    buf[pos] = SEPARATOR
    lo, hi = t_off[r], t_off[r + 1]
    buf[pos + 1: pos + 1 + hi - lo] = t_data[lo:hi]
    return _pad(buf, pos + 1 + hi - lo)


@numba.njit(cache=True, nogil=True)
def key_ids(times, a_data, a_off, t_data, t_off, out):
    """``out[r]`` = the first 8 bytes of MD5(f"{times[r]}\\x1f{author r}\\x1f{title r}"), little-endian, shifted right
    by one; the authors and titles as Arrow string buffers (``*_off``: the ``len(times) + 1`` offsets of the
    rows, into ``*_data``). Rows are hashed two at a time (:func:`_compress2`)."""
    longest = 0
    for r in range(len(times)):
        longest = max(longest, (a_off[r + 1] - a_off[r]) + (t_off[r + 1] - t_off[r]))
    size = (longest + 22 + 8) // 64 * 64 + 64
    buf1, buf2 = np.zeros(size, np.uint8), np.zeros(size, np.uint8)
    w1, w2 = buf1.view(np.uint32), buf2.view(np.uint32)
    n = len(times)
    for r in range(0, n, 2):
        k1 = _key(r, times, a_data, a_off, t_data, t_off, buf1)
        k2 = _key(r + 1, times, a_data, a_off, t_data, t_off, buf2) if r + 1 < n else 0
        first, second = _first8_pair(w1, k1, w2, k2)
        out[r] = first
        if r + 1 < n:
            out[r + 1] = second


@numba.njit(cache=True, nogil=True)
def first8(data, offsets, out):
    """``out[r]`` = the first 8 bytes of MD5(data[offsets[r]:offsets[r + 1]]), little-endian, shifted right by one."""
    longest = 0
    for r in range(len(offsets) - 1):
        longest = max(longest, offsets[r + 1] - offsets[r])
    buf = np.zeros((longest + 8) // 64 * 64 + 64, np.uint8)
    words = buf.view(np.uint32)
    for r in range(len(offsets) - 1):
        lo, hi = offsets[r], offsets[r + 1]
        buf[: hi - lo] = data[lo:hi]
        out[r] = _first8_pair(words, _pad(buf, hi - lo), words, 0)[0]


def first8_of(data: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    first8(data, offsets, out)

"""The byte scan behind :class:`~pipelines.engagement.records.RecordSplitter`, compiled by numba.

One pass over a chunk does what took the numpy version five (``== NL``, ``== QUOTE``, ``< 32``, ``flatnonzero``,
``searchsorted``) and a Python loop over windows: it follows the quote parity from a record's start, ends the
record at the first newline with an even number of quotes since then, counts its lines and bytes, notes control
characters and quotes astray (neither next to a delimiter, line end or quote), and settles the usual multi-line
record (a title with a newline in it, every quote well placed) itself. It stops and hands back to Python only
for what needs Python's ``csv`` or a decision: a record past the limits, a multi-line record it cannot vouch
for, the tail of the chunk. The functions release the GIL (``nogil``), so another thread parses or writes
meanwhile, and are cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

NL, CR, QUOTE = 10, 13, 34

#: What :func:`scan` stopped on (its first result).
END, REFUSED, VERIFY, FULL = 0, 1, 2, 3
#: Kinds of the pieces :func:`scan` writes: a run of good records, or one record with a quote astray.
RUN, SUSPECT = 0, 1


@numba.njit(cache=True, nogil=True, inline="always")
def _control(c: int) -> bool:
    """A control character other than TAB, LF and CR (or DEL)."""
    return (c < 32 and c != 9 and c != NL and c != CR) or c == 127


@numba.njit(cache=True, nogil=True)
def has_control(a: np.ndarray, lo: int, hi: int) -> bool:
    """Whether ``a[lo:hi]`` holds a control character other than TAB, LF and CR (or DEL)."""
    for i in range(lo, hi):  # noqa: SIM110 (a plain loop compiles to a plain loop)
        if _control(a[i]):
            return True
    return False


@numba.njit(cache=True, nogil=True)
def plainly_valid(a: np.ndarray, lo: int, hi: int, n_fields: int, delim: int) -> bool:
    """Whether ``a[lo:hi]`` (ending with LF or CRLF) is, beyond doubt, one CSV record of ``n_fields`` fields that
    Python's strict ``csv`` reader accepts: every field unquoted without quote, line end or control character, or
    quoted with its inner quotes doubled and its closing quote before a delimiter or the line end. False means
    "ask Python's ``csv``", not "invalid"."""
    end = hi
    if end > lo and a[end - 1] == NL:
        end -= 1
        if end > lo and a[end - 1] == CR:
            end -= 1
    pos, fields = lo, 0
    while True:
        fields += 1
        if pos < end and a[pos] == QUOTE:
            pos += 1
            while True:  # inside the quotes
                if pos >= end:
                    return False
                c = a[pos]
                if c == QUOTE:
                    if pos + 1 < end and a[pos + 1] == QUOTE:
                        pos += 2
                        continue
                    pos += 1
                    break
                if _control(c):
                    return False
                pos += 1
            if pos == end:
                break
            if a[pos] != delim:
                return False
            pos += 1
        else:
            while pos < end and a[pos] != delim:
                c = a[pos]
                if c == QUOTE or c == NL or c == CR or _control(c):  # noqa: SIM109 (no tuple for numba)
                    return False
                pos += 1
            if pos == end:
                break
            pos += 1
    return fields == n_fields


@numba.njit(cache=True, nogil=True)
def scan(a: np.ndarray, s: int, max_bytes: int, max_lines: int, n_fields: int, delim: int, out: np.ndarray):
    """Scan records from ``s`` (a record start) until something needs the caller.

    Good records go to ``out`` (rows of ``start, end, kind``): a ``RUN`` of contiguous good records, or one
    ``SUSPECT`` record holding a quote astray. Returns ``(status, pos, n_out, first_nl, lines, odd, suspect,
    control, end)``: the record at ``pos`` is the one stopped on (``END``: the chunk ended inside it, ``pos`` may be
    ``len(a)``; ``REFUSED``: longer than ``max_bytes`` or ``max_lines``; ``VERIFY``: a multi-line record
    ``a[pos:end]`` to be checked by Python's ``csv``; ``FULL``: ``out`` is full, resume at ``pos``), ``first_nl``
    the position of its first newline (-1 if none), ``lines`` its newlines so far, ``odd`` whether it holds an odd
    number of quotes so far, ``suspect`` whether it holds a quote astray; ``control`` whether a control
    character was seen in ``a[s:]`` up to the stop.
    """
    n = len(a)
    k = 0
    run_lo = s  # the current run of good records, a[run_lo:start]
    start, first_nl, lines, odd, suspect, control = s, -1, 0, 0, False, False
    i = s
    while i < n:
        c = a[i]
        if c > QUOTE and c != 127:  # the bulk: letters, digits, punctuation
            i += 1
            continue
        if c == QUOTE:
            odd ^= 1
            if 0 < i < n - 1:
                p, q = a[i - 1], a[i + 1]
                if (p != delim and p != NL and p != CR and p != QUOTE
                        and q != delim and q != NL and q != CR and q != QUOTE):
                    suspect = True
        elif c == NL:
            lines += 1
            if first_nl < 0:
                first_nl = i
            size = i + 1 - start
            if odd == 0:  # the record ends here
                if size > max_bytes or lines > max_lines:
                    return REFUSED, start, _close(out, k, run_lo, start), first_nl, lines, odd, suspect, control, i + 1
                if lines > 1 and not plainly_valid(a, start, i + 1, n_fields, delim):
                    return VERIFY, start, _close(out, k, run_lo, start), first_nl, lines, odd, suspect, control, i + 1
                if suspect:
                    k = _close(out, k, run_lo, start)
                    if k == len(out):
                        return FULL, start, k, -1, 0, 0, False, control, start
                    out[k, 0], out[k, 1], out[k, 2] = start, i + 1, SUSPECT
                    k += 1
                    run_lo = i + 1
                if k >= len(out) - 1:  # room for a run and a suspect
                    return FULL, i + 1, _close(out, k, run_lo, i + 1), -1, 0, 0, False, control, i + 1
                start, first_nl, lines, suspect = i + 1, -1, 0, False
            elif size > max_bytes or lines > max_lines:  # refused, wherever it would end
                return REFUSED, start, _close(out, k, run_lo, start), first_nl, lines, odd, suspect, control, i + 1
        elif _control(c):
            control = True
        i += 1
    return END, start, _close(out, k, run_lo, start), first_nl, lines, odd, suspect, control, n


@numba.njit(cache=True, nogil=True, inline="always")
def _close(out: np.ndarray, k: int, lo: int, hi: int) -> int:
    """Write the run ``lo:hi`` (if not empty) as piece ``k``; the number of pieces after."""
    if hi > lo:
        out[k, 0], out[k, 1], out[k, 2] = lo, hi, RUN
        return k + 1
    return k


@numba.njit(cache=True, nogil=True)
def find_byte(a: np.ndarray, lo: int, byte: int) -> int:
    """The position of the first ``byte`` in ``a[lo:]``, or -1."""
    for i in range(lo, len(a)):
        if a[i] == byte:
            return i
    return -1

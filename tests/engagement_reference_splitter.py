"""The record splitter as it was before the numba scan (numpy passes over the chunk), kept verbatim as the
reference the compiled one is compared with (tests/unit/test_engagement_split_kernel.py): same good records,
same refused ones (offset, reason, detail, text), same carry, same control flag, on any input."""
from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass, field

import numpy as np

#: Quarantined record text is cut to this many characters (the detail says how long it was).
TEXT_LIMIT = 2000
_WINDOW = 1 << 16
_NL, _QUOTE, _CR = 10, 34, 13


@dataclass
class BadRecord:
    """A record the splitter refused: where it starts in the file, why, and its (cut) text."""

    offset: int
    reason: str
    detail: str
    text: str


@dataclass
class Split:
    """The good records of a chunk (``body``), the refused ones, and the incomplete tail to carry over."""

    body: bytes | memoryview
    bad: list[BadRecord] = field(default_factory=list)
    carry: bytes = b""
    control: bool = False  # whether the chunk holds a control character (TAB, LF, CR aside) anywhere


def _text(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…"


class NumpyRecordSplitter:
    """Record boundaries of CSV chunks with ``n_fields`` columns, each record bounded in bytes and lines."""

    def __init__(self, n_fields: int, max_record_bytes: int = 64 * 1024, max_record_lines: int = 20,
                 delimiter: str = ",") -> None:
        if max_record_bytes < 16 or max_record_lines < 1:
            raise ValueError("max_record_bytes must be at least 16 and max_record_lines at least 1")
        self.n_fields = n_fields
        self.max_bytes = max_record_bytes
        self.max_lines = max_record_lines
        self.delimiter = delimiter
        self._ordinary_stop = np.array([ord(delimiter), _NL, _CR, _QUOTE], dtype=np.uint8)
        self._overlong: BadRecord | None = None  # a line too long to hold, being skipped up to its newline
        self._overlong_bytes = 0

    # ------------------------------------------------------------------ verification
    def _valid_record(self, raw: bytes) -> bool:
        """Whether ``raw`` is exactly one strictly valid CSV record with the header's number of fields."""
        try:
            rows = list(csv.reader(io.StringIO(raw.decode("utf-8", errors="replace"), newline=""),
                                   delimiter=self.delimiter, strict=True))
        except csv.Error:
            return False
        rows = [r for r in rows if r]
        return len(rows) == 1 and len(rows[0]) == self.n_fields

    def _strict_ok(self, raw: bytes) -> bool:
        """Whether ``raw`` (one line) is valid CSV at all (its field count is the parser's business)."""
        try:
            list(csv.reader(io.StringIO(raw.decode("utf-8", errors="replace"), newline=""),
                            delimiter=self.delimiter, strict=True))
        except csv.Error:
            return False
        return True

    # ------------------------------------------------------------------ the split
    def split(self, data: bytes, offset: int = 0, final: bool = False) -> Split:
        """Split ``data`` (which starts at a record boundary, ``offset`` bytes into the file).

        Returns the good records, the refused ones and, unless ``final``, the incomplete tail to prepend to
        the next chunk.
        """
        n = len(data)
        bad: list[BadRecord] = []
        s = 0
        if self._overlong is not None:  # finish skipping a line too long to hold
            nxt = data.find(b"\n")
            s = n if nxt < 0 else nxt + 1
            self._overlong_bytes += s
            if nxt >= 0 or final:
                bad.append(self._finish_overlong())
        if s >= n:
            return Split(b"", bad)
        a = np.frombuffer(data, dtype=np.uint8)
        nl = np.flatnonzero(a == _NL)
        q = np.flatnonzero(a == _QUOTE)
        below = int(np.count_nonzero(a < 32))  # usually just the newlines: then no CR/TAB counting needed
        control = (below != len(nl) and below != len(nl) + data.count(b"\r") + data.count(b"\t")) \
            or b"\x7f" in data
        parity = (np.searchsorted(q, nl) & 1).astype(np.int8)  # quotes before each newline, mod 2
        by_parity = (np.flatnonzero(parity == 0), np.flatnonzero(parity == 1))
        starts_parts: list[np.ndarray] = []
        ends_parts: list[np.ndarray] = []
        carry = b""
        # record start, index of the first newline at/after it, quote parity before it
        i0, b = int(np.searchsorted(nl, s)), int(np.searchsorted(q, s)) & 1
        while s < n:
            bounds = by_parity[b][np.searchsorted(by_parity[b], i0):][:_WINDOW]
            if len(bounds):
                prev = np.empty_like(bounds)
                prev[0], prev[1:] = i0 - 1, bounds[:-1]
                starts = np.where(prev >= i0, nl[np.maximum(prev, 0)] + 1, s)
                ends = nl[bounds] + 1
                lines = bounds - prev
                refused = ((ends - starts) > self.max_bytes) | (lines > self.max_lines)
                limit = int(np.argmax(refused)) if refused.any() else len(bounds)
                for k in np.flatnonzero(lines[:limit] > 1).tolist():  # a title with a newline, or quotes astray
                    if not self._valid_record(data[int(starts[k]): int(ends[k])]):
                        limit = k
                        break
                if limit < len(bounds):  # refuse the record's first line; resume on the next line, re-based
                    j = limit
                    starts_parts.append(starts[:j])
                    ends_parts.append(ends[:j])
                    first_nl = int(prev[j]) + 1  # the newline ending the refused record's first line
                    line_start, line_end = int(starts[j]), int(nl[first_nl]) + 1
                    bad.append(self._first_line(data, line_start, line_end, offset, multi=lines[j] > 1
                                                and not refused[j]))
                    s, i0, b = line_end, first_nl + 1, int(parity[first_nl])
                    continue
                starts_parts.append(starts)
                ends_parts.append(ends)
                s, i0 = int(ends[-1]), int(bounds[-1]) + 1
                if len(bounds) == _WINDOW:
                    continue
            # No record ends after s: what is left is an incomplete record, a final one, or a broken one.
            tail_len, tail_lines = n - s, len(nl) - i0
            if tail_len == 0:
                break
            within = tail_len <= self.max_bytes and tail_lines <= self.max_lines
            if not final and within:
                carry = data[s:]
                break
            tail_quotes = len(q) - int(np.searchsorted(q, s))
            last = final and within and tail_quotes % 2 == 0  # the last record, without a newline
            if last and (tail_lines == 0 or self._valid_record(data[s:])):
                starts_parts.append(np.array([s]))
                ends_parts.append(np.array([n]))
                break
            if tail_lines == 0:  # one line, no newline: too long, or a quote open at the end of the file
                if tail_len > self.max_bytes and not final:  # skip the rest of the line in the next chunks
                    self._overlong = BadRecord(offset + s, "overlong_record", "", _text(data[s: s + TEXT_LIMIT]))
                    self._overlong_bytes = tail_len
                    break
                bad.append(self._first_line(data, s, n, offset, at_eof=final))
                break
            line_end = int(nl[i0]) + 1
            bad.append(self._first_line(data, s, line_end, offset, at_eof=final and within))
            s, i0, b = line_end, i0 + 1, int(parity[i0])
        starts = np.concatenate(starts_parts) if starts_parts else np.zeros(0, np.int64)
        ends = np.concatenate(ends_parts) if ends_parts else np.zeros(0, np.int64)
        body = self._body(data, a, q, starts, ends, bad, offset)
        bad.sort(key=lambda record: record.offset)  # in file order, however the chunks fell
        return Split(body, bad, carry, control)

    def _finish_overlong(self) -> BadRecord:
        record, self._overlong = self._overlong, None
        assert record is not None
        record.detail = (f"byte {record.offset}: a line of {self._overlong_bytes} bytes (more than {self.max_bytes}) "
                         "is not a post")
        return record

    def _first_line(self, data: bytes, start: int, end: int, offset: int, at_eof: bool = False,
                    multi: bool = False) -> BadRecord:
        raw = data[start:end]
        if len(raw) > self.max_bytes:
            return BadRecord(offset + start, "overlong_record",
                             f"byte {offset + start}: a line of more than {self.max_bytes} bytes is not a post",
                             _text(raw))
        if at_eof:
            why = "the file ends inside a quoted field"
        elif multi:
            why = "the line opens a quote, and it and the lines up to the closing quote are not one valid record"
        else:
            why = f"the record opens a quote that is not closed within {self.max_lines} lines / {self.max_bytes} bytes"
        return BadRecord(offset + start, "broken_quoting", f"byte {offset + start}: {why}", _text(raw))

    def _body(self, data: bytes, a: np.ndarray, q: np.ndarray, starts: np.ndarray, ends: np.ndarray,
              bad: list[BadRecord], offset: int) -> bytes | memoryview:
        """The accepted records as one byte string, without those whose stray quotes make them invalid CSV."""
        if not len(ends):
            return b""
        suspects: set[int] = set()
        if len(q):
            inner = q[(q > 0) & (q < len(a) - 1)]
            stray = inner[~np.isin(a[inner - 1], self._ordinary_stop) & ~np.isin(a[inner + 1], self._ordinary_stop)]
            if len(stray):
                at = np.searchsorted(ends, stray, side="right")
                inside = at < len(ends)
                inside[inside] = starts[at[inside]] <= stray[inside]
                suspects.update(np.unique(at[inside]).tolist())
        refused: dict[int, list[tuple[int, int]]] = {}
        for k in sorted(suspects):
            raw = data[int(starts[k]): int(ends[k])]
            if not self._strict_ok(raw):
                bad.append(BadRecord(offset + int(starts[k]), "broken_quoting",
                                     f"byte {offset + int(starts[k])}: a quote inside a field is neither doubled nor "
                                     "at the field's edge", _text(raw)))
                refused[k] = []
        return _assemble(data, starts, ends, refused)


def _assemble(data: bytes, starts: np.ndarray, ends: np.ndarray, replaced: dict[int, list[tuple[int, int]]]
              ) -> bytes | memoryview:
    """The records ``starts[k]:ends[k]`` joined in order, contiguous runs copied in one piece; a record in
    ``replaced`` contributes its listed spans instead (none when refused)."""
    breaks = set((np.flatnonzero(starts[1:] != ends[:-1]) + 1).tolist())
    breaks.update(replaced)
    breaks.update(k + 1 for k in replaced)
    edges = sorted({0, len(ends)} | {k for k in breaks if 0 < k < len(ends)})
    if edges == [0, len(ends)] and not replaced and starts[0] == 0:
        return memoryview(data)[: int(ends[-1])]  # no copy: the common case
    pieces: list[bytes] = []
    for lo, hi in itertools.pairwise(edges):
        if lo in replaced:
            pieces.extend(data[s:e] for s, e in replaced[lo])
        else:
            pieces.append(data[int(starts[lo]): int(ends[hi - 1])])
    return b"".join(pieces)

"""Split a CSV byte stream into records, so that one broken quote costs one row, not the rest of the file.

A CSV parser that meets an opening quote which is never closed reads the rest of the file as one field, or
flips every later quoted title inside out; a streamed converter would turn gigabytes into garbage or hold them
in memory. This splitter finds the records of a chunk by quote parity (a newline ends a record when an even
number of quotes precedes it since the record began), in one compiled pass over the bytes
(:mod:`~pipelines.engagement.split_kernel`), and bounds every record:

* a record longer than ``max_record_bytes`` or spanning more than ``max_record_lines`` lines is not a post:
  its **first line** is quarantined (``broken_quoting`` when that line opens a quote it never closes,
  ``overlong_record`` when the line itself is too long) and splitting resumes on the next line, re-based;
* a record spanning several lines (a title with a newline in it) is kept only if it parses, strictly, to the
  header's number of fields; otherwise each of its lines is judged on its own (so two broken lines close
  together cost two rows, and the good lines between them are kept);
* a quote in the middle of a field that is neither doubled nor at the field's edge (``"He said "hi" now"``)
  makes lenient parsers garble the title silently: such records are parsed strictly and quarantined
  (``broken_quoting``) when they are not valid CSV.

The good records come back as one byte string, in order, for a fast parser (pyarrow); a trailing incomplete
record is carried to the next chunk. Rows with the wrong number of fields are left to that parser to report.
Only ``\\n`` and ``\\r\\n`` line ends are understood.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import numpy as np

from pipelines.engagement import split_kernel as kernel

#: Quarantined record text is cut to this many characters (the detail says how long it was).
TEXT_LIMIT = 2000


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


def _text(raw: bytes | memoryview) -> str:
    text = str(raw, "utf-8", "replace")
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…"


class RecordSplitter:
    """Record boundaries of CSV chunks with ``n_fields`` columns, each record bounded in bytes and lines."""

    def __init__(self, n_fields: int, max_record_bytes: int = 64 * 1024, max_record_lines: int = 20,
                 delimiter: str = ",") -> None:
        if max_record_bytes < 16 or max_record_lines < 1:
            raise ValueError("max_record_bytes must be at least 16 and max_record_lines at least 1")
        if len(delimiter) != 1 or not delimiter.isascii():
            raise ValueError("the delimiter must be one ASCII character")
        self.n_fields = n_fields
        self.max_bytes = max_record_bytes
        self.max_lines = max_record_lines
        self.delimiter = delimiter
        self._delim = ord(delimiter)
        self._out = np.empty((1024, 3), dtype=np.int64)  # the scan's pieces (good runs, suspects) between stops
        self._overlong: BadRecord | None = None  # a line too long to hold, being skipped up to its newline
        self._overlong_bytes = 0

    # ------------------------------------------------------------------ verification
    def _valid_record(self, raw: bytes | memoryview) -> bool:
        """Whether ``raw`` is exactly one strictly valid CSV record with the header's number of fields."""
        try:
            rows = list(csv.reader(io.StringIO(str(raw, "utf-8", "replace"), newline=""),
                                   delimiter=self.delimiter, strict=True))
        except csv.Error:
            return False
        rows = [r for r in rows if r]
        return len(rows) == 1 and len(rows[0]) == self.n_fields

    def _strict_ok(self, raw: bytes | memoryview) -> bool:
        """Whether ``raw`` (one line) is valid CSV at all (its field count is the parser's business)."""
        try:
            list(csv.reader(io.StringIO(str(raw, "utf-8", "replace"), newline=""),
                            delimiter=self.delimiter, strict=True))
        except csv.Error:
            return False
        return True

    # ------------------------------------------------------------------ the split
    def split(self, data: bytes | memoryview, offset: int = 0, final: bool = False) -> Split:
        """Split ``data`` (which starts at a record boundary, ``offset`` bytes into the file).

        Returns the good records, the refused ones and, unless ``final``, the incomplete tail to prepend to
        the next chunk. A zero-copy ``body`` is a view of ``data``; the carry is a copy.
        """
        n = len(data)
        bad: list[BadRecord] = []
        s = 0
        a = np.frombuffer(data, dtype=np.uint8)
        if self._overlong is not None:  # finish skipping a line too long to hold
            nxt = kernel.find_byte(a, 0, kernel.NL)
            s = n if nxt < 0 else nxt + 1
            self._overlong_bytes += s
            if nxt >= 0 or final:
                bad.append(self._finish_overlong())
        if s >= n:
            return Split(b"", bad)
        control = s > 0 and bool(kernel.has_control(a, 0, s))  # the skipped part; the scan sees the rest
        pieces: list[tuple[int, int, int]] = []
        carry = b""
        while s < n:
            status, pos, k, first_nl, lines, odd, suspect, seen, end = kernel.scan(
                a, s, self.max_bytes, self.max_lines, self.n_fields, self._delim, self._out)
            control = control or seen
            pieces.extend(map(tuple, self._out[:k].tolist()))
            kind = kernel.SUSPECT if suspect else kernel.RUN
            if status == kernel.FULL:
                s = pos
            elif status == kernel.REFUSED:  # refuse the record's first line; resume on the next line
                bad.append(self._first_line(data, pos, first_nl + 1, offset))
                s = first_nl + 1
            elif status == kernel.VERIFY:  # a multi-line record the scan could not vouch for
                if self._valid_record(data[pos:end]):
                    pieces.append((pos, end, kind))
                    s = end
                else:
                    bad.append(self._first_line(data, pos, first_nl + 1, offset, multi=True))
                    s = first_nl + 1
            else:
                s, carry = self._tail(data, pos, first_nl, lines, odd, kind, final, offset, pieces, bad)
                if s >= n:
                    break
        body = self._body(data, pieces, bad, offset)
        bad.sort(key=lambda record: record.offset)  # in file order, however the chunks fell
        return Split(body, bad, carry, control)

    def _tail(self, data: bytes | memoryview, s: int, first_nl: int, lines: int, odd: int, kind: int, final: bool,
              offset: int, pieces: list[tuple[int, int, int]], bad: list[BadRecord]) -> tuple[int, bytes]:
        """No record ends after ``s``: what is left is an incomplete record (carried), a final one, or a broken
        one (its first line refused). Returns where to resume (``len(data)``: nowhere) and the carry."""
        n = len(data)
        tail_len = n - s
        if tail_len == 0:
            return n, b""
        within = tail_len <= self.max_bytes and lines <= self.max_lines
        if not final and within:
            return n, bytes(data[s:])
        if final and within and not odd and (lines == 0 or self._valid_record(data[s:])):
            pieces.append((s, n, kind))  # the last record, without a newline
            return n, b""
        if lines == 0:  # one line, no newline: too long, or a quote open at the end of the file
            if tail_len > self.max_bytes and not final:  # skip the rest of the line in the next chunks
                self._overlong = BadRecord(offset + s, "overlong_record", "", _text(data[s: s + TEXT_LIMIT]))
                self._overlong_bytes = tail_len
            else:
                bad.append(self._first_line(data, s, n, offset, at_eof=final))
            return n, b""
        bad.append(self._first_line(data, s, first_nl + 1, offset, at_eof=final and within))
        return first_nl + 1, b""

    def _finish_overlong(self) -> BadRecord:
        record, self._overlong = self._overlong, None
        assert record is not None
        record.detail = (f"byte {record.offset}: a line of {self._overlong_bytes} bytes (more than {self.max_bytes}) "
                         "is not a post")
        return record

    def _first_line(self, data: bytes | memoryview, start: int, end: int, offset: int, at_eof: bool = False,
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

    def _body(self, data: bytes | memoryview, pieces: list[tuple[int, int, int]], bad: list[BadRecord], offset: int
              ) -> bytes | memoryview:
        """The good records as one byte string, without those whose stray quotes make them invalid CSV."""
        spans: list[tuple[int, int]] = []
        for lo, hi, kind in pieces:
            if kind == kernel.SUSPECT and not self._strict_ok(data[lo:hi]):
                bad.append(BadRecord(offset + lo, "broken_quoting", f"byte {offset + lo}: a quote inside a field is "
                                     "neither doubled nor at the field's edge", _text(data[lo:hi])))
            elif spans and spans[-1][1] == lo:
                spans[-1] = (spans[-1][0], hi)
            else:
                spans.append((lo, hi))
        if len(spans) == 1 and spans[0][0] == 0:
            return memoryview(data)[: spans[0][1]]  # no copy: the common case
        return b"".join(data[lo:hi] for lo, hi in spans)

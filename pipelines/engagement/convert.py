"""Convert Eluvio-format CSV to month-partitioned Parquet, streaming, in bounded memory, on the ingest contract.

One ingest partition is a day's drop (``engagement/raw/dt=YYYY-MM-DD/``) or one historical file
(``engagement/raw/history/<name>``). Every file is read in blocks of ``block_bytes``:

1. :class:`~pipelines.engagement.records.RecordSplitter` cuts the block into records (broken quoting and
   overlong lines are refused there, one line each);
2. pyarrow parses the good records as strings (a row with the wrong number of fields is reported by its
   invalid-row handler: ``wrong_field_count``); a block that is not valid UTF-8 is decoded with replacement
   and its rows holding U+FFFD are refused (``bad_encoding``);
3. Arrow compute types and checks every column (the first reason that applies, :data:`~pipelines.engagement.
   schema.VALUE_REASONS`) and trims text; DuckDB keeps the raw fields of refused rows as JSON;
4. on a background thread, valid rows get their post id (:mod:`~pipelines.engagement.post_ids`) and go to one
   Parquet file per (month, input file), a row group at a time; refused rows go to the file's quarantine part.

Memory is one block and its parsed forms, plus at most ``row_group_rows`` buffered rows per open month: it
does not grow with the file. After every file, duplicates (the same post id twice in the partition, the
first kept) are found per month by DuckDB (spilling if need be) and moved to the quarantine (``duplicate``,
benign). The contract then decides, publishes the run's folder and commits (:func:`pipelines.ingest.run_ingest`).
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import itertools
import logging
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from pipelines import duck, ingest
from pipelines.engagement import schema
from pipelines.engagement.records import TEXT_LIMIT, RecordSplitter
from pipelines.errors import InputSchemaError, MissingPartitionError
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

FORMATS = ("csv",)
_BOM = b"\xef\xbb\xbf"
_BLANK = re.compile(rb"[\xef\xbb\xbf \r\n\t]*")  # an empty file: a BOM and white space at most (matched, not copied)


@dataclass(frozen=True)
class ConvertOptions:
    """Knobs of the conversion; the defaults suit a 2-core worker with 2 GB to spare."""

    block_bytes: int = 32 << 20
    max_record_bytes: int = 64 << 10
    max_record_lines: int = 20
    row_group_rows: int = 256 * 1024
    compression: str = "zstd"
    duckdb_memory: str = "1GB"


_STAGED_SCHEMA = None


def staged_schema():
    """The Arrow schema of the staged posts (:data:`~pipelines.engagement.schema.STAGED_COLUMNS`)."""
    global _STAGED_SCHEMA
    if _STAGED_SCHEMA is None:
        import pyarrow as pa

        types = {"string": pa.string(), "int64": pa.int64(), "bool": pa.bool_()}
        _STAGED_SCHEMA = pa.schema([(name, types[kind]) for name, kind in schema.STAGED_COLUMNS])
    return _STAGED_SCHEMA


_QUARANTINE_SCHEMA = None


def _quarantine_schema():
    global _QUARANTINE_SCHEMA
    if _QUARANTINE_SCHEMA is None:
        import pyarrow as pa

        _QUARANTINE_SCHEMA = pa.schema([("source", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
                                        ("record", pa.string())])
    return _QUARANTINE_SCHEMA


# ----------------------------------------------------------------------------------------------- reading
def _open_binary(item: ingest.DropFile):
    """A binary stream of the file's bytes, decompressed on the fly (gzip, bz2, zstd)."""
    if item.compression == "gzip":
        return gzip.open(item.path, "rb")
    if item.compression == "bz2":
        return bz2.open(item.path, "rb")
    if item.compression == "zstd":
        import pyarrow as pa

        return pa.CompressedInputStream(pa.OSFile(str(item.path)), "zstd")
    return open(item.path, "rb")


def _read(stream, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the stream)."""
    parts, got = [], 0
    while got < n:
        piece = stream.read(n - got)
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_into(stream, view: memoryview) -> int:
    """Fill ``view`` from the stream; the bytes read (fewer only at the end of the stream)."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


class _ReadAhead:
    """Blocks of a stream read (and decompressed) on a background thread into a few reused buffers: file reads and
    zlib/bz2/zstd release the GIL, so reading overlaps the splitting and parsing of the block before, and no
    block's memory is allocated (and page-faulted) afresh. Each buffer keeps ``head`` bytes free in front, where
    the consumer puts the incomplete record carried from the block before (never more than a record's bound).
    :meth:`next` gives ``(buffer, bytes read)``, 0 at the end of the stream, and raises a read error; the
    consumer gives every buffer back with :meth:`release` once nothing refers to it."""

    def __init__(self, stream, block_bytes: int, head: int, depth: int = 1) -> None:
        import queue
        import threading

        self.stream, self.head = stream, head
        self.ready: queue.Queue = queue.Queue()
        self.free: queue.Queue = queue.Queue()
        for _ in range(depth + 2):  # the consumer holds two (this block and the next), the reader fills the rest
            self.free.put(bytearray(head + block_bytes))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="engagement-read", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while (buffer := self._take_free()) is not None:
                n = _read_into(self.stream, memoryview(buffer)[self.head:])
                self.ready.put((buffer, n))
                if not n:
                    return
        except BaseException as exc:  # handed to the consumer
            self.ready.put(exc)

    def _take_free(self) -> bytearray | None:
        import queue

        while not self.stop.is_set():
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def next(self) -> tuple[bytearray, int]:
        item = self.ready.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def release(self, buffer: bytearray) -> None:
        self.free.put(buffer)

    def close(self) -> None:
        """Stop reading (the consumer is done, or failed) and wait for the thread."""
        self.stop.set()
        self.thread.join()


def parse_header(first: bytes, name: str) -> tuple[list[str], int]:
    """The column names of the file's first line and the byte length of that line (BOM included)."""
    start = len(_BOM) if first.startswith(_BOM) else 0
    end = first.find(b"\n", start)
    line = first[start: len(first) if end < 0 else end]
    if line.count(b'"') % 2:
        raise InputSchemaError(f"{name}: the header line has an unclosed quote")
    try:
        names = next(csv.reader([line.decode("utf-8").rstrip("\r")]), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputSchemaError(f"{name}: the header line is not readable CSV ({exc})") from None
    names = [n.strip() for n in names]
    known = [n for n in names if n in schema.CSV_COLUMNS]
    if len(set(known)) != len(known):
        raise InputSchemaError(f"{name}: duplicate column names in header {names}")
    missing = [c for c in schema.REQUIRED_COLUMNS if c not in names]
    if missing:
        raise InputSchemaError(f"{name}: required column(s) {missing} missing (header has {names})")
    return names, (len(first) if end < 0 else end + 1)


# ----------------------------------------------------------------------------------------------- checking
_REASON_CODE = {reason: i + 1 for i, reason in enumerate(schema.VALUE_REASONS)}
_FLAGS_TRUE, _FLAGS_OK = {"true", "1"}, {"", "true", "false", "1", "0"}
#: Raw fields of a refused row, as the JSON ``record`` of its quarantine row.
_RECORD_SQL = """SELECT to_json({time_created: time_created, date_created: date_created, up_votes: up_votes,
    down_votes: down_votes, title: title, over_18: over_18, author: author, category: category})::VARCHAR AS record
FROM refused"""
def _integers(column) -> tuple[np.ndarray, np.ndarray]:
    """``(values, ok)`` of a text column of integers: an optional sign and 1-18 digits, spaces around allowed;
    anything else (``7.5``, ``1e3``, ``n/a``, ``--3``) is not ok (and its value 0)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    digits = pc.ascii_is_decimal(column)
    if column.null_count == 0 and pc.all(digits).as_py() and pc.max(pc.binary_length(column)).as_py() <= 18:
        return pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False), np.ones(len(column), dtype=bool)
    ok = pc.fill_null(pc.match_substring_regex(column, r"^\s*[+-]?[0-9]{1,18}\s*$"), False)
    text = pc.if_else(ok, pc.utf8_ltrim(pc.utf8_trim_whitespace(column), "+"), "0")
    return pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False), ok.to_numpy(zero_copy_only=False)


def check_block(table, day: date | None, repaired: bool, control: bool) -> dict:
    """Type and check a parsed block (the CSV columns as text). Returns ``code`` (0 = valid, else 1 + the index
    of the first reason in :data:`~pipelines.engagement.schema.VALUE_REASONS` that applies), the typed
    ``time_created``, ``up_votes``, ``down_votes``, ``over_18`` and the trimmed ``title`` and ``author``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    code = np.zeros(n, dtype=np.int8)

    def mark(mask, reason: str) -> None:
        hit = np.asarray(mask, dtype=bool) & (code == 0)
        code[hit] = _REASON_CODE[reason]

    def present(name: str) -> bool:
        return table[name].null_count < n

    title = pc.utf8_trim(table["title"], schema.TRIMMED)
    author = pc.utf8_trim(table["author"], schema.TRIMMED)
    if control:
        hit = np.zeros(n, dtype=bool)
        for name in schema.CSV_COLUMNS:
            if present(name):
                hit |= pc.fill_null(pc.match_substring_regex(table[name], ingest.CONTROL_CHARS), False).to_numpy(
                    zero_copy_only=False)
        mark(hit, "control_characters")
    if repaired:
        mark(pc.or_(pc.match_substring(title, "\ufffd"), pc.match_substring(author, "\ufffd")).to_numpy(
            zero_copy_only=False), "bad_encoding")
    t, t_ok = _integers(table["time_created"])
    up, up_ok = _integers(table["up_votes"])
    if present("down_votes"):
        blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(table["down_votes"]), ""), True).to_numpy(
            zero_copy_only=False)
        down, down_ok = _integers(table["down_votes"])
        down_ok = down_ok | blank
    else:
        down, down_ok = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    mark(~(t_ok & up_ok & down_ok), "bad_number")
    mark((t < schema.MIN_TIME) | (t >= schema.MAX_TIME), "bad_time")
    mark((up < 0) | (down < 0), "negative_votes")
    mark(pc.equal(pc.utf8_length(title), 0).to_numpy(zero_copy_only=False), "missing_title")
    mark(pc.equal(pc.utf8_length(author), 0).to_numpy(zero_copy_only=False), "missing_author")
    over_18 = np.zeros(n, dtype=bool)
    if present("over_18"):
        encoded = pc.dictionary_encode(pc.fill_null(table["over_18"], "")).combine_chunks()
        values = [str(v).strip().lower() for v in encoded.dictionary.to_pylist()]
        index = encoded.indices.to_numpy(zero_copy_only=False)
        mark(~np.array([v in _FLAGS_OK for v in values], dtype=bool)[index], "bad_flag")
        over_18 = np.array([v in _FLAGS_TRUE for v in values], dtype=bool)[index]
    days = t // 86_400
    if present("date_created"):
        text = pc.utf8_trim_whitespace(pc.fill_null(table["date_created"], ""))
        parsed = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True)
        stated = pc.fill_null(pc.divide(pc.cast(parsed, pa.int64()), 86_400), -10**9).to_numpy(zero_copy_only=False)
        blank = pc.equal(text, "").to_numpy(zero_copy_only=False)
        mark(~blank & (np.abs(stated - days) > schema.DATE_TOLERANCE_DAYS), "bad_date")
    if day is not None:
        mark(days != (day - date(1970, 1, 1)).days, "outside_day")
    return {"code": code, "time_created": t, "up_votes": up, "down_votes": down, "over_18": over_18,
            "title": title, "author": author}


@dataclass
class FileCounts:
    """What one file contributed (merged into the partition's result only when the file was read whole)."""

    rows_read: int = 0
    rows_valid: int = 0
    reasons: Counter = field(default_factory=Counter)
    months: Counter = field(default_factory=Counter)
    bytes: int = 0
    repaired_blocks: int = 0


class _MonthWriters:
    """The second half of a block's work, on two background threads: one hashes the post ids (:mod:`~pipelines.
    engagement.post_ids`), the other splits the rows by month and writes the Parquet (one file per month for one
    input file, a row group at a time). The MD5 kernel and Parquet encoding release the GIL, so both overlap the
    next block's splitting, parsing and checking (about a third of the work each); at most two blocks wait, so
    memory stays bounded."""

    def __init__(self, folder: Path, file_index: int, options: ConvertOptions, con, source: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.folder, self.index, self.options, self.source = folder, file_index, options, source
        self.cursor = con.cursor()
        self.buffers: dict[str, list] = defaultdict(list)
        self.buffered: Counter = Counter()
        self.writers: dict[str, object] = {}
        self.hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engagement-ids")
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engagement-parquet")
        self.pending: list = []

    def path(self, month: str) -> Path:
        return self.folder / f"posts-{month}--{self.index:03d}.parquet"

    def submit(self, columns: dict, months: np.ndarray) -> None:
        """Queue a block's valid rows (typed columns, no post id yet) and their months."""
        while len(self.pending) >= 2:
            self.pending.pop(0).result()
        ids = self.hasher.submit(self._ids, columns)
        self.pending.append(self.pool.submit(self._block, columns, ids, months))

    def _ids(self, columns: dict) -> np.ndarray:
        from pipelines.engagement.post_ids import post_ids

        return post_ids(columns["time_created"], columns["author"], columns["title"], con=self.cursor)

    def _block(self, columns: dict, ids, months: np.ndarray) -> None:
        """Write a block's rows once its ids (a future of the hasher) are there."""
        import pyarrow as pa

        n = len(months)
        valid = pa.table({"post_id": pa.array(ids.result()), **columns,
                          "source": pa.repeat(pa.scalar(self.source), n)}, schema=staged_schema())
        if n and (months[1:] >= months[:-1]).all():  # sorted by time (the usual export): slices
            cuts = np.flatnonzero(months[1:] != months[:-1]) + 1
            bounds = [0, *cuts.tolist(), n]
            parts = [(str(months[lo]), valid.slice(lo, hi - lo)) for lo, hi in itertools.pairwise(bounds)]
        else:
            uniq, inverse = np.unique(months, return_inverse=True)
            parts = [(str(m), valid.take(pa.array(np.flatnonzero(inverse == k)))) for k, m in enumerate(uniq)]
        for month, part in parts:
            self._add(month, part)

    def _add(self, month: str, table) -> None:
        """Buffer rows of a month; a month's row group is written once it is full, and the fullest months are
        written early when all buffers together pass one row group (memory stays at about one row group)."""
        self.buffers[month].append(table)
        self.buffered[month] += table.num_rows
        if self.buffered[month] >= self.options.row_group_rows:
            self._flush(month)
        while sum(self.buffered.values()) > self.options.row_group_rows:
            self._flush(self.buffered.most_common(1)[0][0])

    def _flush(self, month: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.buffers.get(month):
            return
        table = pa.concat_tables(self.buffers.pop(month))
        self.buffered.pop(month, None)
        writer = self.writers.get(month)
        if writer is None:
            writer = self.writers[month] = pq.ParquetWriter(
                self.path(month), staged_schema(), compression=self.options.compression,
                use_dictionary=["author", "category", "source"], write_statistics=["post_id", "time_created"])
        writer.write_table(table, row_group_size=self.options.row_group_rows)

    def close(self) -> list[Path]:
        try:
            for future in self.pending:
                future.result()
        finally:
            self.pool.shutdown(wait=True)
            self.hasher.shutdown(wait=True)
        for month in list(self.buffers):
            self._flush(month)
        for writer in self.writers.values():
            writer.close()
        self.cursor.close()
        return [self.path(m) for m in self.writers]

    def abort(self) -> None:
        self.hasher.shutdown(wait=True, cancel_futures=True)
        self.pool.shutdown(wait=True, cancel_futures=True)
        for writer in self.writers.values():
            with contextlib.suppress(Exception):  # the partial files are deleted next
                writer.close()
        for month in self.writers:
            self.path(month).unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            self.cursor.close()


def _quarantine_rows(source: str, reason: str, details: list[str], records: list[str]):
    import pyarrow as pa

    n = len(records)
    return pa.table({"source": pa.array([source] * n, pa.string()), "reason": pa.array([reason] * n, pa.string()),
                     "detail": pa.array(details, pa.string()), "record": pa.array(records, pa.string())},
                    schema=_quarantine_schema())


class FileConverter:
    """Converts one input file: posts by month into ``out_dir``, refused rows into ``quarantine_path``."""

    def __init__(self, item: ingest.DropFile, file_index: int, out_dir: Path, quarantine_path: Path,
                 day: date | None, options: ConvertOptions, con, progress: bool = False) -> None:
        self.item, self.index, self.out_dir, self.day, self.options, self.con = (item, file_index, out_dir, day,
                                                                                 options, con)
        self.progress = progress
        self.quarantine_path = quarantine_path
        self.counts = FileCounts()
        self.empty = False

    def run(self) -> FileCounts:
        import pyarrow.parquet as pq

        writers = _MonthWriters(self.out_dir, self.index, self.options, self.con, self.item.name)
        quarantine = pq.ParquetWriter(self.quarantine_path, _quarantine_schema(), compression="zstd")
        try:
            with _open_binary(self.item) as stream:
                self._convert(stream, writers, quarantine)
            writers.close()
        except BaseException:
            writers.abort()
            raise
        finally:
            quarantine.close()
        return self.counts

    def _convert(self, stream, writers: _MonthWriters, quarantine) -> None:
        first = _read(stream, self.options.block_bytes)
        self.counts.bytes += len(first)
        if _BLANK.fullmatch(first):
            self.empty = True
            return
        names, header_len = parse_header(first, self.item.name)
        self.names = names
        bar = None
        if self.progress:  # bytes of the file as stored (compressed files advance by their decompressed bytes)
            from tqdm import tqdm

            bar = tqdm(total=None if self.item.compression else self.item.path.stat().st_size, unit="B",
                       unit_scale=True, desc=f"convert {self.item.name}", disable=None)
            bar.update(len(first))
        splitter = RecordSplitter(len(names), self.options.max_record_bytes, self.options.max_record_lines)
        ahead = _ReadAhead(stream, self.options.block_bytes, head=self.options.max_record_bytes)
        try:
            self._blocks(ahead, splitter, memoryview(first)[header_len:], header_len, writers, quarantine, bar)
        finally:
            ahead.close()
        if bar is not None:
            bar.close()
        if self.counts.rows_read == 0:
            self.empty = True

    def _blocks(self, ahead: _ReadAhead, splitter: RecordSplitter, data: memoryview, offset: int,
                writers: _MonthWriters, quarantine, bar) -> None:
        """Split, parse and check every block (``data``: the first, after the header), handing the rows over to the
        writers. The next block is read before a block is split, to know whether it is the last; the block's buffer
        goes back to the reader once its records are parsed (pyarrow copies what it parses)."""
        held = None  # the buffer ``data`` lies in (None: the first block, read apart)
        while True:
            buffer, n = ahead.next()
            self.counts.bytes += n
            if bar is not None:
                bar.update(n)
            final = n == 0
            split = splitter.split(data, offset, final)
            offset += len(data) - len(split.carry)
            self._quarantine_bad(split.bad, quarantine)
            if len(split.body):
                self._block(split.body, writers, quarantine, split.control)
            if held is not None:
                ahead.release(held)
            if final:
                ahead.release(buffer)
                return
            start = ahead.head - len(split.carry)  # the carried record goes just before the block read after it
            assert start >= 0, "the splitter carries at most one record, of at most max_record_bytes"
            buffer[start: ahead.head] = split.carry
            held, data = buffer, memoryview(buffer)[start: ahead.head + n]

    def _quarantine_bad(self, bad: list, quarantine) -> None:
        """Write the records the splitter refused to the quarantine, a table per reason."""
        for reason in {b.reason for b in bad}:
            chosen = [b for b in bad if b.reason == reason]
            quarantine.write_table(_quarantine_rows(self.item.name, reason, [b.detail for b in chosen],
                                                    [_json_line(b.text) for b in chosen]))
            self.counts.reasons[reason] += len(chosen)
            self.counts.rows_read += len(chosen)

    def _parse(self, body, invalid: list):
        import pyarrow as pa
        import pyarrow.csv as pcsv

        names = [n if n in schema.CSV_COLUMNS else f"_extra_{i}" for i, n in enumerate(self.names)]
        known = [n for n in names if n in schema.CSV_COLUMNS]

        def handler(row) -> str:
            invalid.append((row.expected_columns, row.actual_columns, row.text))
            return "skip"

        return pcsv.read_csv(
            pa.BufferReader(pa.py_buffer(body)),
            read_options=pcsv.ReadOptions(column_names=names, use_threads=True, block_size=4 << 20),
            parse_options=pcsv.ParseOptions(delimiter=self.item.delimiter, newlines_in_values=True,
                                            invalid_row_handler=handler),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}, include_columns=known,
                                                strings_can_be_null=False, quoted_strings_can_be_null=False))

    def _sql(self, query: str, **tables):
        """A DuckDB query over Arrow tables registered under the given names (rows stay in order)."""
        for name, table in tables.items():
            self.con.register(name, table)
        try:
            return self.con.sql(query).to_arrow_table()
        finally:
            for name in tables:
                self.con.unregister(name)

    def _block(self, body, writers: _MonthWriters, quarantine, control: bool) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        invalid: list = []
        repaired = False
        if not _valid_utf8(body):  # pyarrow must never meet invalid UTF-8 (its invalid-row handler cannot)
            body = str(body, "utf-8", errors="replace").encode("utf-8")
            repaired = True
            self.counts.repaired_blocks += 1
        table = self._parse(body, invalid)
        if invalid:
            quarantine.write_table(_quarantine_rows(
                self.item.name, "wrong_field_count",
                [f"expected {e} fields, found {a}" for e, a, _ in invalid], [_json_line(t) for _, _, t in invalid]))
            self.counts.reasons["wrong_field_count"] += len(invalid)
            self.counts.rows_read += len(invalid)
        for column in schema.CSV_COLUMNS:
            if column not in table.column_names:
                table = table.append_column(column, pa.nulls(table.num_rows, pa.string()))
        checked = check_block(table, self.day, repaired, control)
        code = checked["code"]
        self.counts.rows_read += table.num_rows
        refused_mask = code > 0
        if refused_mask.any():
            refused = table.filter(pa.array(refused_mask))
            codes = code[refused_mask]
            reasons = np.array(schema.VALUE_REASONS, dtype=object)[codes - 1]
            for value, count in zip(*np.unique(codes, return_counts=True), strict=True):
                self.counts.reasons[schema.VALUE_REASONS[int(value) - 1]] += int(count)
            records = self._sql(_RECORD_SQL, refused=refused)["record"]
            quarantine.write_table(pa.table({
                "source": pa.repeat(pa.scalar(self.item.name), refused.num_rows),
                "reason": pa.array(reasons.tolist(), pa.string()),
                "detail": pa.nulls(refused.num_rows, pa.string()), "record": records}, schema=_quarantine_schema()))
        keep = ~refused_mask
        n_valid = int(keep.sum())
        if n_valid == 0:
            return
        mask = pa.array(keep) if refused_mask.any() else None

        def kept(values):
            return values if mask is None else values.filter(mask)

        times = checked["time_created"][keep]
        columns = {"time_created": pa.array(times), "up_votes": pa.array(checked["up_votes"][keep]),
                   "down_votes": pa.array(checked["down_votes"][keep]), "title": kept(checked["title"]),
                   "over_18": pa.array(checked["over_18"][keep]), "author": kept(checked["author"]),
                   "category": pc.fill_null(pc.utf8_trim_whitespace(kept(table["category"])), "")}
        months = np.asarray(times, dtype="datetime64[s]").astype("datetime64[M]")
        writers.submit(columns, months)
        self.counts.rows_valid += n_valid
        uniq, counts = np.unique(months, return_counts=True)
        for month, count in zip(uniq, counts, strict=True):
            self.counts.months[str(month)] += int(count)


def _valid_utf8(body) -> bool:
    """Whether ``body`` is valid UTF-8: Arrow's validation of one string over it, without a copy (about twenty
    times cheaper than decoding it to a Python ``str``)."""
    import pyarrow as pa

    data = pa.py_buffer(body)
    offsets = pa.array([0, data.size], pa.int64()).buffers()[1]
    try:
        pa.LargeStringArray.from_buffers(1, offsets, data).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _json_line(text: str) -> str:
    import json

    return json.dumps({"line": text[: TEXT_LIMIT + 1]}, ensure_ascii=False)


# ----------------------------------------------------------------------------------------------- duplicates
def _remove_duplicates(con, folder: Path, month_files: dict[str, list[Path]], quarantine_path: Path,
                       compression: str) -> Counter:
    """Per month, keep the first copy of each post id (file order, then row order); move the others to the
    quarantine as ``duplicate``. Returns the duplicates per month."""
    import pyarrow.parquet as pq

    removed: Counter = Counter()
    writer = None
    try:
        for month, files in sorted(month_files.items()):
            if not _any_duplicate(con, files):
                continue
            paths = duck.sql_paths(sorted(files))
            con.execute(f"""CREATE OR REPLACE TEMP TABLE dups AS
                SELECT filename, file_row_number FROM (
                    SELECT filename, file_row_number, row_number() OVER (
                        PARTITION BY post_id ORDER BY filename, file_row_number) AS copy
                    FROM read_parquet({paths}, filename = true, file_row_number = true)
                    WHERE post_id IN (SELECT post_id FROM read_parquet({paths}) GROUP BY post_id
                                      HAVING count(*) > 1))
                WHERE copy > 1""")
            n = con.sql("SELECT count(*) FROM dups").fetchall()[0][0]
            if not n:
                continue
            removed[month] = n
            for path in sorted(files):
                hit = con.sql("SELECT count(*) FROM dups WHERE filename = ?", params=[str(path)]).fetchall()[0][0]
                if not hit:
                    continue
                rows = con.sql(f"""
                    SELECT source, 'duplicate' AS reason,
                           'post ' || post_id || ' appears earlier in this partition; the first copy is kept'
                               AS detail,
                           to_json({{time_created: time_created, up_votes: up_votes, down_votes: down_votes,
                                     title: title, over_18: over_18, author: author, category: category}})::VARCHAR
                               AS record
                    FROM read_parquet({duck.sql_path(path)}, file_row_number = true)
                    WHERE file_row_number IN (SELECT file_row_number FROM dups WHERE filename = ?)""",
                                   params=[str(path)]).to_arrow_table().cast(_quarantine_schema())
                if writer is None:
                    writer = pq.ParquetWriter(quarantine_path, _quarantine_schema(), compression="zstd")
                writer.write_table(rows)
                tmp = path.with_name(f".{path.name}.dedup")
                con.execute(f"""COPY (SELECT * EXCLUDE (file_row_number)
                                      FROM read_parquet({duck.sql_path(path)}, file_row_number = true)
                                      WHERE file_row_number NOT IN (SELECT file_row_number FROM dups
                                                                    WHERE filename = ?)
                                      ORDER BY file_row_number)
                                TO {duck.sql_path(tmp)} (FORMAT parquet, COMPRESSION {compression})""", [str(path)])
                tmp.replace(path)
    finally:
        if writer is not None:
            writer.close()
    return removed


def _any_duplicate(con, paths: list[Path]) -> bool:
    """Whether a post id appears twice in a month's ``paths``: one scan of its id column, where finding the
    duplicates takes two (the usual export has none). Month by month, so the hash table stays a month's."""
    return bool(con.sql(f"""SELECT 1 FROM read_parquet({duck.sql_paths(sorted(paths))}) GROUP BY post_id
                            HAVING count(*) > 1 LIMIT 1""").fetchall())


def _merge_quarantine(con, parts: list[Path], out: Path) -> None:
    """The partition's ``quarantine.parquet``: every part, streamed by DuckDB."""
    existing = [p for p in parts if p.exists()]
    if not existing:
        ingest.empty_quarantine(out)
        return
    con.execute(f"COPY (SELECT source, reason, detail, record FROM {duck.read_parquet(existing)}) "
                f"TO {duck.sql_path(out)} (FORMAT parquet, COMPRESSION zstd)")


# ----------------------------------------------------------------------------------------------- validators
def convert_files(files: list[ingest.DropFile], staging: ingest.Workspace, result: ingest.IngestResult,
                  day: date | None, options: ConvertOptions, progress: bool = False) -> None:
    """Convert ``files`` into ``staging`` and account every row and file on ``result``."""
    started = time.perf_counter()
    con = duck.connect(staging.workdir, memory_limit=options.duckdb_memory)
    con.execute("SET preserve_insertion_order = true")  # rows stay in file order: months in runs, first copies
    parts: list[Path] = []
    month_files: dict[str, list[Path]] = defaultdict(list)
    months: Counter = Counter()
    files_info: dict[str, dict] = {}
    empty: list[str] = []
    try:
        for index, item in enumerate(files):
            part = staging.workdir / f"quarantine-{index:03d}.parquet"
            converter = FileConverter(item, index, staging.local, part, day, options, con, progress)
            try:
                counts = converter.run()
            except InputSchemaError as exc:
                part.unlink(missing_ok=True)
                result.unread(item.name, "bad_header", str(exc))
                continue
            except Exception as exc:  # truncated gzip, undecodable compression, I/O error: report the file
                part.unlink(missing_ok=True)
                result.unread(item.name, "unreadable_file", ingest.short_error(exc))
                continue
            result.files.append(item.name)
            parts.append(part)
            if converter.empty:
                empty.append(item.name)
            result.rows_read += counts.rows_read
            result.rows_valid += counts.rows_valid
            for reason, n in counts.reasons.items():
                result.add(reason, n)
            months.update(counts.months)
            for month in counts.months:
                month_files[month].append(staging.local / f"posts-{month}--{index:03d}.parquet")
            files_info[item.name] = {"bytes": counts.bytes, "rows_read": counts.rows_read,
                                     "rows_valid": counts.rows_valid, "repaired_blocks": counts.repaired_blocks}
        dup_part = staging.workdir / "quarantine-duplicates.parquet"
        removed = _remove_duplicates(con, staging.local, month_files, dup_part, options.compression)
        if removed:
            result.add("duplicate", sum(removed.values()))
            result.rows_valid -= sum(removed.values())
            months.subtract(removed)
            parts.append(dup_part)
        _merge_quarantine(con, parts, staging.path("quarantine.parquet"))
    finally:
        con.close()
    seconds = time.perf_counter() - started
    total_bytes = sum(f["bytes"] for f in files_info.values())
    result.extra.update({"months": dict(sorted(months.items())), "files": files_info, "empty_files": empty,
                         "seconds": round(seconds, 3), "bytes": total_bytes,
                         "mb_per_s": round(total_bytes / 1e6 / seconds, 1) if seconds else None})


def _file_item(root: DataRoot, rel: str) -> ingest.DropFile:
    """The drop file at ``rel`` (downloaded first when the root is on S3)."""
    name = Path(rel).name
    kind, compression = ingest.file_format(name)
    if not root.exists(rel):
        raise MissingPartitionError(f"no file {root.join(rel)}")
    path = _local_file(root, rel)
    return ingest.DropFile(name=name, path=path, format=kind, compression=compression)


def _local_file(root: DataRoot, rel: str) -> Path:
    """A local path of one file under the root: itself locally, a cached download on S3 (``DataRoot`` mirrors
    whole folders only; a history folder can hold many large files, of which one is wanted)."""
    if not root.is_s3:
        return root.base / rel
    from pipelines.settings import get_settings

    local = get_settings().home / "cache" / root.bucket / root._key(rel)
    local.parent.mkdir(parents=True, exist_ok=True)
    root._s3().download_file(root.bucket, root._key(rel), str(local))
    return local


def day_validator(day: date, root: DataRoot, options: ConvertOptions | None = None,
                  progress: bool = False) -> ingest.Validator:
    """The validator of a day's drop (every file of ``engagement/raw/dt=<day>/``; posts of another day are
    refused as ``outside_day``)."""
    options = options or ConvertOptions()

    def validate(staging: ingest.Workspace, result: ingest.IngestResult) -> None:
        files = ingest.read_drop(root, schema.raw_day_dir(day), FORMATS, result, "engagement posts drop")
        convert_files(files, staging, result, day, options, progress)

    return validate


def file_validator(rel: str, root: DataRoot, options: ConvertOptions | None = None,
                   progress: bool = False) -> ingest.Validator:
    """The validator of one file (a historical export): every post in it, whatever its day."""
    options = options or ConvertOptions()

    def validate(staging: ingest.Workspace, result: ingest.IngestResult) -> None:
        item = _file_item(root, rel)
        if item.format not in FORMATS:
            result.unread(item.name, "unsupported_file", "not a file type this pipeline reads (.csv, optionally "
                                                         ".gz/.zst/.bz2)")
            return
        convert_files([item], staging, result, None, options, progress)

    return validate


def local_file_validator(path: Path, options: ConvertOptions | None = None, day: date | None = None,
                         progress: bool = False) -> ingest.Validator:
    """The validator of a file anywhere on disk (previews, benchmarks): nothing is read from the data root."""
    options = options or ConvertOptions()

    def validate(staging: ingest.Workspace, result: ingest.IngestResult) -> None:
        kind, compression = ingest.file_format(path.name)
        if not path.is_file():
            raise MissingPartitionError(f"no file {path}")
        item = ingest.DropFile(name=path.name, path=path, format=kind, compression=compression)
        if kind not in FORMATS:
            result.unread(item.name, "unsupported_file", "not a .csv file (optionally .gz/.zst/.bz2)")
            return
        convert_files([item], staging, result, day, options, progress)

    return validate


def preview(path: Path, max_bad_share: float = 0.05, options: ConvertOptions | None = None,
            workspace: ingest.Workspace | None = None) -> ingest.IngestResult:
    """Convert a local file without touching PostgreSQL or the data root (what tests and ``preview`` call)."""
    partition = schema.file_partition(path.name) if schema._SAFE_NAME.match(path.name) else f"file={path.name}"
    return ingest.inspect(schema.PIPELINE, partition, local_file_validator(path, options), max_bad_share=max_bad_share,
                          benign_reasons=schema.BENIGN_REASONS, workspace=workspace)

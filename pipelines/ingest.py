"""The one ingest contract every pipeline's validation follows.

A pipeline's ingest reads one *partition* of input (a day's drop, a snapshot, the targets, a pager's pages) and
decides, row by row, what is valid and what is quarantined with its reason. This module holds everything around
that decision, so every pipeline behaves the same way under bad input, reruns and concurrent runs:

* **Drop files** (:func:`drop_files`): every file of a partition is classified by its suffix, case-insensitive
  (``.csv``, ``.tsv``, ``.jsonl``, ``.json``, ``.parquet``, each optionally ``.gz`` / ``.zst`` / ``.bz2``); a file
  of an unknown type, or one that cannot be read, becomes a quarantine entry (``unsupported_file`` /
  ``unreadable_file``) and rejects the partition: rows that cannot be read cannot be accounted for.
* **Run-scoped staging** (:class:`StagedRun`): a run builds its staged files in a private folder and publishes
  them under ``<pipeline>/staged/<partition>/run=<run id>/`` in the data root; nothing another run reads is
  ever overwritten, so two runs of the same partition cannot clobber each other.
* **The result** (:class:`IngestResult`): files read, rows read / valid, quarantined rows by reason (benign
  reasons, e.g. merged duplicates, are counted but are not "bad"), bad share, status and why.
* **The threshold decision** (:meth:`IngestResult.decide`): rejected past ``max_bad_share``, with no valid row,
  or with an unread file; the error is :class:`~pipelines.errors.RunRejected` (no retry).
* **The commit** (:func:`commit`), written last, in one transaction under the partition's lock: the
  partition's quarantine rows and its row in ``ingest_partitions`` (status, pointer to the accepted run's
  staged folder, counts). A rejected attempt of a partition that was accepted before keeps the accepted run
  (its quarantine, its pointer) and records the attempt beside it; so the quarantine always describes the data
  readers see, and a failure before the commit leaves the previous state whole.
* **Readers** ask :func:`accepted` / :func:`accepted_partitions` which partitions are accepted and where their
  staged files are: never "whatever file happens to lie in the folder".
* **Text safety**: NUL and other control characters never reach PostgreSQL: :func:`clean_text_sql` strips them
  in DuckDB, and the quarantine writer replaces them in raw records (as ``U+2400``, so the evidence stays).

:func:`run_ingest` strings these together around a pipeline's own ``validate`` callable, with the registry run.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipelines import db, duck
from pipelines.errors import RunRejected
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

QUARANTINE_COLUMNS = ["pipeline", "partition_key", "source", "reason", "detail", "record", "run_id"]
#: Control characters PostgreSQL text cannot hold (NUL) or that corrupt logs and CSV exports; TAB, LF and CR
#: are kept. As a DuckDB regular expression.
CONTROL_CHARS = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]"
#: What a NUL in a raw quarantined record becomes (the visible "symbol for null").
NUL_STANDIN = "\u2400"

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
            ".parquet": "parquet"}
_COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".bz2": "bz2"}


# ----------------------------------------------------------------------------------------------- files
@dataclass(frozen=True)
class DropFile:
    """One file of a partition: its name, local path, format and compression (from its suffix)."""

    name: str
    path: Path
    format: str | None  # csv, tsv, jsonl, json, parquet; None = not a type we read
    compression: str | None = None  # gzip, zstd, bz2

    @property
    def delimiter(self) -> str:
        return "\t" if self.format == "tsv" else ","


def file_format(name: str) -> tuple[str | None, str | None]:
    """``(format, compression)`` of a file name, case-insensitive: ``b.CSV.BZ2`` → ``("csv", "bz2")``."""
    lower = name.lower()
    compression = None
    for suffix, kind in _COMPRESSIONS.items():
        if lower.endswith(suffix):
            compression, lower = kind, lower[: -len(suffix)]
            break
    for suffix, kind in _FORMATS.items():
        if lower.endswith(suffix):
            return kind, compression
    return None, compression


def drop_files(root: DataRoot, rel_dir: str, formats: Iterable[str]) -> tuple[list[DropFile], list[DropFile]]:
    """The files of a drop folder as ``(readable, unsupported)``: every file is one or the other.

    Hidden files (``.name``, e.g. an uploader's temp file) and ``_SUCCESS``-style markers are neither: they are
    not data. ``formats`` are the formats this pipeline reads.
    """
    wanted = set(formats)
    names = [r for r in root.list(rel_dir) if not Path(r).name.startswith((".", "_"))]
    if not names:
        return [], []
    local = root.local_dir(rel_dir)
    readable, unsupported = [], []
    for rel in names:
        name = Path(rel).name
        kind, compression = file_format(name)
        item = DropFile(name=name, path=local / name, format=kind, compression=compression)
        (readable if kind in wanted else unsupported).append(item)
    return readable, unsupported


def plain_path(item: DropFile, workdir: Path) -> Path:
    """A path DuckDB can read: bz2 (which DuckDB cannot) is decompressed into ``workdir``, streamed."""
    if item.compression != "bz2":
        return item.path
    out = workdir / f"{item.name[:-4]}"
    with bz2.open(item.path, "rb") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return out


def open_text(path: Path, compression: str | None) -> io.TextIOBase:
    """A text stream of a plain, gzip, zstd or bz2 file, UTF-8 with undecodable bytes replaced."""
    if compression == "gzip":
        return gzip.open(path, "rt", newline="", encoding="utf-8", errors="replace")
    if compression == "bz2":
        return bz2.open(path, "rt", newline="", encoding="utf-8", errors="replace")
    if compression == "zstd":
        import pyarrow as pa

        raw = pa.CompressedInputStream(pa.OSFile(str(path)), "zstd")
        return io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8", errors="replace", newline="")
    return open(path, newline="", encoding="utf-8", errors="replace")


def duckdb_compression(item: DropFile) -> str:
    """The ``compression`` option of DuckDB's readers for this file ('none' once bz2 was expanded)."""
    return item.compression if item.compression in ("gzip", "zstd") else "none"


def short_error(exc: BaseException, limit: int = 300) -> str:
    """One line of an exception, for a quarantine detail or an error message (no traceback, no newlines)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}"


def clean_text_sql(expr: str) -> str:
    """A DuckDB expression: ``expr`` without control characters (NULs would make PostgreSQL refuse the row)."""
    return f"regexp_replace({expr}, '{CONTROL_CHARS}', '', 'g')"


# ----------------------------------------------------------------------------------------------- result
@dataclass
class IngestResult:
    """What validating one partition found, the same fields for every pipeline."""

    pipeline: str
    partition: str
    rows_read: int = 0
    rows_valid: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # every quarantined row, by reason
    benign_reasons: tuple[str, ...] = ()  # counted and quarantined, but not bad (repairs, merged duplicates)
    files: list[str] = field(default_factory=list)  # every file read
    files_unread: dict[str, dict[str, str]] = field(default_factory=dict)  # file → {reason, detail}
    status: str = "pending"  # accepted | rejected
    rejection: str | None = None
    run_id: str | None = None
    staged_uri: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # pipeline-specific figures (users, artists, ...)

    @property
    def rows_bad(self) -> int:
        return sum(n for r, n in self.reasons.items() if r not in self.benign_reasons)

    @property
    def rows_quarantined(self) -> int:
        return sum(self.reasons.values())

    @property
    def bad_share(self) -> float:
        return self.rows_bad / self.rows_read if self.rows_read else 0.0

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def add(self, reason: str, n: int = 1) -> None:
        if n:
            self.reasons[reason] = self.reasons.get(reason, 0) + int(n)

    def reject(self, why: str) -> None:
        """Reject the partition for a pipeline-specific reason (e.g. one of two files has no valid row)."""
        self.extra["rejected_because"] = why

    def unread(self, name: str, reason: str, detail: str) -> None:
        """Report a file that could not be read (``unsupported_file``, ``unreadable_file``): it is quarantined
        by name and rejects the partition, since rows that cannot be read cannot be accounted for."""
        self.files_unread[name] = {"reason": reason, "detail": detail}

    def decide(self, max_bad_share: float, bad_share: float | None = None) -> IngestResult:
        """Accept or reject, and say why. ``bad_share`` overrides the row share (e.g. the worse of two files)."""
        share = self.bad_share if bad_share is None else bad_share
        if self.files_unread:
            listed = "; ".join(f"{name}: {why['detail']}" for name, why in sorted(self.files_unread.items()))
            self.rejection = (f"{self.pipeline} {self.partition}: {len(self.files_unread)} file(s) could not be read "
                              f"({listed}); nothing is loaded until every file is readable or removed")
        elif self.extra.get("rejected_because"):
            self.rejection = f"{self.pipeline} {self.partition}: {self.extra['rejected_because']}"
        elif share > max_bad_share:
            self.rejection = (f"{self.pipeline} {self.partition}: {self.rows_bad} of {self.rows_read} rows are bad "
                              f"({share:.2%} > threshold {max_bad_share:.2%}); reasons {self.reasons}. "
                              "The rows are in the quarantine table.")
            if bad_share is not None:
                self.rejection += f" (bad share: {self.extra.get('bad_share_rule', 'pipeline rule')})"
        elif self.rows_valid == 0:
            self.rejection = (f"{self.pipeline} {self.partition}: no valid row ({self.rows_read} read, reasons "
                              f"{self.reasons}); refusing to load an empty partition")
        else:
            self.rejection = None
        self.status = "rejected" if self.rejection else "accepted"
        return self

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("benign_reasons")
        return {**data, "rows_bad": self.rows_bad, "rows_quarantined": self.rows_quarantined,
                "bad_share": round(self.bad_share, 6)}


# ----------------------------------------------------------------------------------------------- staging
def partition_dir(partition: str) -> str:
    """``2017-04-01`` → ``dt=2017-04-01``; other keys (``targets``) stay as they are."""
    try:
        datetime.strptime(partition, "%Y-%m-%d")
    except ValueError:
        return partition
    return f"dt={partition}"


def staged_rel(pipeline: str, partition: str, run_id: str) -> str:
    return f"{pipeline}/staged/{partition_dir(partition)}/run={run_id}"


class Workspace:
    """Where a validator writes: staged files in :attr:`local`, scratch (spill, decompressed input) in
    :attr:`workdir`. A plain folder for tests and previews; :class:`StagedRun` for real runs."""

    def __init__(self, base: Path | None = None, prefix: str = "ingest-") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix) if base is None else None
        base = Path(self._tmp.name) if self._tmp else Path(base)
        self.local = base / "staged"
        self.workdir = base / "work"
        self.local.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def path(self, name: str) -> Path:
        return self.local / name


class StagedRun(Workspace):
    """A run's private staging folder: build files in :attr:`local`, then :meth:`publish` them all at once."""

    def __init__(self, root: DataRoot, pipeline: str, partition: str, run_id: str) -> None:
        super().__init__(prefix=f"{pipeline}-stage-")
        self.root, self.pipeline, self.partition, self.run_id = root, pipeline, partition, str(run_id)
        self.rel = staged_rel(pipeline, partition, self.run_id)

    def publish(self, summary: Mapping[str, Any]) -> str:
        """Write ``summary.json`` and move every staged file to the run's folder in the data root."""
        (self.local / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        return self.root.put_dir(self.local, self.rel, last="summary.json")


def empty_quarantine(path: Path) -> Path:
    """Write a quarantine Parquet file with no rows (the schema :func:`commit` reads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("source", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
                        ("record", pa.string())])
    pq.write_table(schema.empty_table(), path)
    return path


def quarantine_from_rows(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """A quarantine Parquet file from Python rows (``source, reason, detail, record``; record any JSON value)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list] = {"source": [], "reason": [], "detail": [], "record": []}
    for row in rows:
        cols["source"].append(row.get("source"))
        cols["reason"].append(row["reason"])
        cols["detail"].append(row.get("detail"))
        record = row.get("record")
        cols["record"].append(record if record is None or isinstance(record, str)
                              else json.dumps(record, ensure_ascii=False, default=str))
    pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in cols.items()}), path)
    return path


# ----------------------------------------------------------------------------------------------- commit
def lock_partition(cur, pipeline: str, partition: str) -> None:
    """The one lock of a partition's writes (quarantine, status, loads), held until the transaction ends."""
    db.advisory_xact_lock(cur, f"partition:{pipeline}:{partition}")


def _quarantine_csv(parquet: Path, out: Path, pipeline: str, partition: str, run_id: str) -> None:
    """The staged quarantine as a COPY-ready CSV: control characters out of every text, valid JSON records."""
    con = duck.connect(out.parent)
    try:
        record = ("CASE WHEN record IS NULL THEN NULL WHEN json_valid(record) THEN record "
                  "ELSE to_json({raw: record})::VARCHAR END")
        # NUL can hide in JSON as the escape \u0000, which jsonb refuses too.
        record = f"replace(regexp_replace({record}, '\\x00', '{NUL_STANDIN}', 'g'), '\\u0000', '{NUL_STANDIN}')"
        text = lambda c: f"regexp_replace(CAST({c} AS VARCHAR), '{CONTROL_CHARS}', '{NUL_STANDIN}', 'g')"  # noqa: E731
        con.execute(
            f"COPY (SELECT $pipeline AS pipeline, $partition AS partition_key, {text('source')} AS source, "
            f"{text('reason')} AS reason, {text('detail')} AS detail, {record} AS record, $run_id AS run_id "
            f"FROM read_parquet({duck.sql_path(parquet)})) TO {duck.sql_path(out)} (FORMAT csv, HEADER true)",
            {"pipeline": pipeline, "partition": partition, "run_id": run_id})
    finally:
        con.close()


def replace_quarantine(cur, pipeline: str, partition: str, parquet: Path | None, run_id: str | None) -> int:
    """Replace one partition's quarantine rows with a staged file's (inside the caller's transaction)."""
    cur.execute("DELETE FROM quarantine WHERE pipeline = %s AND partition_key = %s", (pipeline, partition))
    if parquet is None:
        return 0
    import pyarrow.parquet as pq

    if pq.ParquetFile(parquet).metadata.num_rows == 0:
        return 0
    with tempfile.TemporaryDirectory(prefix="quarantine-") as tmp:
        csv_path = Path(tmp) / "quarantine.csv"
        _quarantine_csv(parquet, csv_path, pipeline, partition, run_id or "")
        with open(csv_path, encoding="utf-8") as stream:
            cur.copy_expert("COPY quarantine (pipeline, partition_key, source, reason, detail, record, run_id) "
                            "FROM STDIN WITH (FORMAT csv, HEADER true, FORCE_NULL (run_id))", stream)
            return cur.rowcount


def _partition_row(cur, pipeline: str, partition: str) -> dict | None:
    rows = db.fetch_dicts(cur, "SELECT * FROM ingest_partitions WHERE pipeline = %s AND partition_key = %s",
                          (pipeline, partition))
    return rows[0] if rows else None


def commit(result: IngestResult, quarantine: Path | None, dsn: str | None = None,
           inside: Callable[[Any], None] | None = None) -> dict:
    """Write the partition's outcome last, in one transaction: quarantine rows and ``ingest_partitions``.

    An accepted result replaces the partition's quarantine and moves its pointer to this run. A rejected one
    does the same only if the partition was never accepted; otherwise the accepted run stays what readers see,
    and the attempt is recorded beside it (``last_status``, ``last_run_id``, ``last_error``). ``inside(cur)``
    runs in the same transaction (a pipeline's own bookkeeping). Returns the partition's row.
    """
    with db.transaction(dsn) as cur:
        lock_partition(cur, result.pipeline, result.partition)
        previous = _partition_row(cur, result.pipeline, result.partition)
        keep_previous = not result.accepted and previous is not None and previous["status"] == "accepted"
        figures = {"pipeline": result.pipeline, "partition": result.partition, "run_id": result.run_id,
                   "status": result.status, "error": result.rejection, "staged_uri": result.staged_uri,
                   "files": len(result.files) + len(result.files_unread), "rows_read": result.rows_read,
                   "rows_valid": result.rows_valid, "rows_quarantined": result.rows_quarantined,
                   "bad_share": result.bad_share, "reasons": json.dumps(result.reasons),
                   "extra": json.dumps(result.extra, default=str)}
        if keep_previous:
            cur.execute("""UPDATE ingest_partitions SET last_status = %(status)s, last_run_id = %(run_id)s,
                               last_error = %(error)s, last_reasons = %(reasons)s, last_attempt_at = now()
                           WHERE pipeline = %(pipeline)s AND partition_key = %(partition)s""", figures)
            log.warning("%s %s: this attempt was rejected; the accepted run %s stays in place (%s)",
                        result.pipeline, result.partition, previous["run_id"], result.rejection)
        else:
            replace_quarantine(cur, result.pipeline, result.partition, quarantine, result.run_id)
            cur.execute(
                """INSERT INTO ingest_partitions (pipeline, partition_key, status, run_id, staged_uri, files,
                       rows_read, rows_valid, rows_quarantined, bad_share, reasons, extra, error, last_status,
                       last_run_id, last_error, last_reasons, last_attempt_at, updated_at)
                   VALUES (%(pipeline)s, %(partition)s, %(status)s, %(run_id)s, %(staged_uri)s, %(files)s,
                       %(rows_read)s, %(rows_valid)s, %(rows_quarantined)s, %(bad_share)s, %(reasons)s, %(extra)s,
                       %(error)s, %(status)s, %(run_id)s, %(error)s, %(reasons)s, now(), now())
                   ON CONFLICT (pipeline, partition_key) DO UPDATE SET status = EXCLUDED.status,
                       run_id = EXCLUDED.run_id, staged_uri = EXCLUDED.staged_uri, files = EXCLUDED.files,
                       rows_read = EXCLUDED.rows_read, rows_valid = EXCLUDED.rows_valid,
                       rows_quarantined = EXCLUDED.rows_quarantined, bad_share = EXCLUDED.bad_share,
                       reasons = EXCLUDED.reasons, extra = EXCLUDED.extra, error = EXCLUDED.error,
                       last_status = EXCLUDED.last_status,
                       last_run_id = EXCLUDED.last_run_id, last_error = EXCLUDED.last_error,
                       last_reasons = EXCLUDED.last_reasons, last_attempt_at = now(), updated_at = now()""", figures)
        if inside is not None:
            inside(cur)
        return _partition_row(cur, result.pipeline, result.partition) or {}


# ----------------------------------------------------------------------------------------------- readers
def accepted(pipeline: str, partition: str, dsn: str | None = None) -> dict | None:
    """The partition's accepted row (``staged_uri``, ``run_id``, counts), or None."""
    rows = db.query("SELECT * FROM ingest_partitions WHERE pipeline = %s AND partition_key = %s "
                    "AND status = 'accepted'", (pipeline, partition), dsn)
    return rows[0] if rows else None


def accepted_partitions(pipeline: str, through: str | None = None, since: str | None = None,
                        dsn: str | None = None) -> dict[str, dict]:
    """``{partition: row}`` of every accepted partition in key order (ISO days sort as dates), within bounds."""
    rows = db.query(
        """SELECT * FROM ingest_partitions WHERE pipeline = %(p)s AND status = 'accepted'
             AND (%(through)s::text IS NULL OR partition_key <= %(through)s)
             AND (%(since)s::text IS NULL OR partition_key >= %(since)s)
           ORDER BY partition_key""", {"p": pipeline, "through": through, "since": since}, dsn)
    return {r["partition_key"]: r for r in rows}


def partition_status(pipeline: str, partition: str, dsn: str | None = None) -> dict | None:
    rows = db.query("SELECT * FROM ingest_partitions WHERE pipeline = %s AND partition_key = %s",
                    (pipeline, partition), dsn)
    return rows[0] if rows else None


def accepted_dir(pipeline: str, partition: str, root: DataRoot | None = None, dsn: str | None = None) -> Path:
    """A local folder holding the accepted run's staged files of a partition (mirrored from S3 when needed).

    Raises :class:`~pipelines.errors.MissingPartitionError` when the partition has no accepted run.
    """
    from pipelines.errors import MissingPartitionError

    root = root or DataRoot()
    row = accepted(pipeline, partition, dsn)
    if row is None:
        status = partition_status(pipeline, partition, dsn)
        why = f"its last ingest was {status['status']}: {status['error']}" if status else "it was never ingested"
        raise MissingPartitionError(f"{pipeline} {partition} has no accepted input ({why})")
    return root.local_dir(staged_rel_of(row, root))


def staged_rel_of(row: Mapping[str, Any], root: DataRoot) -> str:
    """The data-root-relative folder of an accepted row's staged files."""
    from pipelines.errors import MissingPartitionError

    uri = row["staged_uri"]
    if uri is None:
        raise MissingPartitionError(
            f"{row['pipeline']} {row['partition_key']}: its staged files were removed by the retention policy on "
            f"{(row.get('extra') or {}).get('pruned_at')}; ingest the raw input again")
    prefix = root.uri.rstrip("/") + "/"
    if not uri.startswith(prefix):
        raise ValueError(f"staged files {uri} are not under the data root {root.uri}")
    return uri[len(prefix):]


# ----------------------------------------------------------------------------------------------- the flow
Validator = Callable[[Workspace, IngestResult], None]


def _finish_quarantine(staging: Workspace, result: IngestResult) -> Path:
    """The staged ``quarantine.parquet``, created empty when the validator wrote none, with one row per file
    that could not be read appended (its name, reason and why)."""
    path = staging.path("quarantine.parquet")
    if not path.exists():
        empty_quarantine(path)
    if result.files_unread:
        files = quarantine_from_rows(staging.workdir / "quarantine_files.parquet", [
            {"source": name, "reason": why["reason"], "detail": why["detail"], "record": {"file": name}}
            for name, why in sorted(result.files_unread.items())])
        merged = staging.workdir / "quarantine_merged.parquet"
        con = duck.connect(staging.workdir)
        try:
            con.execute(f"COPY (SELECT source, reason, detail, record FROM {duck.read_parquet([path])} UNION ALL "
                        f"SELECT source, reason, detail, record FROM {duck.read_parquet([files])}) "
                        f"TO {duck.sql_path(merged)} (FORMAT parquet)")
        finally:
            con.close()
        merged.replace(path)
    return path


def inspect(pipeline: str, partition: str, validate: Validator, *, max_bad_share: float,
            benign_reasons: Iterable[str] = (), bad_share: Callable[[IngestResult], float] | None = None,
            workspace: Workspace | None = None) -> IngestResult:
    """Validate and decide without touching PostgreSQL or the data root: a preview, and what unit tests and
    fuzzers call. Staged files stay in ``workspace`` (a temporary one unless given)."""
    own = workspace is None
    staging = workspace or Workspace(prefix=f"{pipeline}-inspect-")
    try:
        result = IngestResult(pipeline=pipeline, partition=partition, benign_reasons=tuple(benign_reasons))
        validate(staging, result)
        _finish_quarantine(staging, result)
        return result.decide(max_bad_share, bad_share(result) if bad_share else None)
    finally:
        if own:
            staging.close()


def run_ingest(pipeline: str, partition: str, validate: Validator, *, max_bad_share: float,
               params: Mapping[str, Any] | None = None, interval=None, root: DataRoot | None = None,
               benign_reasons: Iterable[str] = (), bad_share: Callable[[IngestResult], float] | None = None,
               inside: Callable[[Any, IngestResult], None] | None = None) -> IngestResult:
    """Validate one partition under the contract and return its result; raise :class:`RunRejected` if rejected.

    ``validate(staging, result)`` reads the partition, fills ``result`` (rows, reasons, files read and unread)
    and writes its staged files into ``staging.local``, including ``quarantine.parquet`` (columns ``source,
    reason, detail, record``). It may raise :class:`~pipelines.errors.MissingPartitionError` (late input:
    retried) or :class:`~pipelines.errors.InputSchemaError` (a file without a required column: rejected)
    before anything is written. After it: the decision, the run's staged folder published, then the commit
    (quarantine rows + the partition's status) last. ``inside(cur, result)`` runs in the commit's transaction.
    """
    from pipelines import registry
    from pipelines.migrate import ensure_schema
    from pipelines.settings import pg_dsn

    root = root or DataRoot()
    dsn = pg_dsn()
    ensure_schema(dsn)
    params = {"partition": partition, "max_bad_share": max_bad_share, **(params or {})}
    with registry.track_run(pipeline, "ingest", params=params, interval=interval) as run:
        result = IngestResult(pipeline=pipeline, partition=partition, benign_reasons=tuple(benign_reasons),
                              run_id=str(run.run_id))
        with StagedRun(root, pipeline, partition, str(run.run_id)) as staging:
            validate(staging, result)
            quarantine = _finish_quarantine(staging, result)
            result.decide(max_bad_share, bad_share(result) if bad_share else None)
            result.staged_uri = root.join(staging.rel)
            run.artifact_uri = result.staged_uri
            quarantine_copy = staging.workdir / "quarantine_commit.parquet"  # publish moves the staged folder
            shutil.copyfile(quarantine, quarantine_copy)
            staging.publish(result.as_dict())
            commit(result, quarantine_copy, dsn, None if inside is None else lambda cur: inside(cur, result))
        from pipelines.ops.hooks import after_ingest  # operations: quarantine-share warning alert (never raises)

        after_ingest(result, max_bad_share, bad_share(result) if bad_share else None, dsn)
        run.summary = result.as_dict()
        run.log_metrics({"rows_read": result.rows_read, "rows_valid": result.rows_valid,
                         "rows_bad": result.rows_bad, "rows_quarantined": result.rows_quarantined,
                         "bad_share": result.bad_share, "files": len(result.files),
                         "files_unread": len(result.files_unread)})
        run.log_metrics({f"quarantined_{r}": n for r, n in result.reasons.items()}, segment=f"partition={partition}")
        log.info("%s %s: %s (%d read, %d valid, quarantined %s)", pipeline, partition, result.status,
                 result.rows_read, result.rows_valid, result.reasons)
        if not result.accepted:
            raise RunRejected(result.rejection or f"{pipeline} {partition} rejected")
    return result


def read_drop(root: DataRoot, rel_dir: str, formats: Iterable[str], result: IngestResult, what: str) -> list[DropFile]:
    """The readable files of a drop folder; files of another type are reported on ``result`` (and so
    quarantined, rejecting the partition). No file at all is :class:`MissingPartitionError` (late input)."""
    from pipelines.errors import MissingPartitionError

    readable, unsupported = drop_files(root, rel_dir, formats)
    if not readable and not unsupported:
        raise MissingPartitionError(f"no {what} for {result.partition} under {root.join(rel_dir)}")
    wanted = ", ".join(sorted(formats))
    for item in unsupported:
        result.unread(item.name, "unsupported_file",
                      f"not a file type this pipeline reads ({wanted}, optionally .gz/.zst/.bz2)")
    return readable


def drop_ready(root: DataRoot, rel_dir: str) -> bool:
    """Whether a drop folder holds at least one data file (what the DAGs' sensors wait for)."""
    return any(not Path(r).name.startswith((".", "_")) for r in root.list(rel_dir))


# ----------------------------------------------------------------------------------------------- retention
def prune_staging(pipeline: str, keep_attempts: int = 1, root: DataRoot | None = None, dsn: str | None = None,
                  before: str | None = None, drop_accepted: bool = False, only: str | None = None) -> dict:
    """The staging retention policy: delete staged run folders no reader needs. Returns what was removed.

    For every partition (only those with a key before ``before``, or only ``only``, when given): every attempt
    except the accepted run and the newest ``keep_attempts`` others (kept for inspection). With ``drop_accepted`` the
    accepted run's folder goes too, for pipelines whose later steps no longer read it (its partition row keeps
    its counts, loses its ``staged_uri`` and records ``pruned_at``, so a reader gets a clear error).
    """
    root = root or DataRoot()
    rows = {r["partition_key"]: r for r in db.query(
        "SELECT partition_key, run_id, status, staged_uri FROM ingest_partitions WHERE pipeline = %s",
        (pipeline,), dsn)}
    removed = []
    for part_dir in root.list_dirs(f"{pipeline}/staged"):
        partition = part_dir[3:] if part_dir.startswith("dt=") else part_dir
        if (before is not None and partition >= before) or (only is not None and partition != only):
            continue
        row = rows.get(partition)
        accepted_run = f"run={row['run_id']}" if row and row["status"] == "accepted" else None
        runs = [d for d in root.list_dirs(f"{pipeline}/staged/{part_dir}") if d.startswith("run=")]
        others = sorted((d for d in runs if d != accepted_run), key=lambda d: _run_started(d[4:], dsn),
                        reverse=True)
        doomed = others[keep_attempts:]
        if drop_accepted and accepted_run in runs:
            doomed.append(accepted_run)
            with db.transaction(dsn) as cur:
                lock_partition(cur, pipeline, partition)
                cur.execute("""UPDATE ingest_partitions SET staged_uri = NULL,
                                   extra = extra || jsonb_build_object('pruned_at', now()::text)
                               WHERE pipeline = %s AND partition_key = %s AND run_id = %s""",
                            (pipeline, partition, row["run_id"]))
        for name in doomed:
            root.remove_dir(f"{pipeline}/staged/{part_dir}/{name}")
            removed.append(f"{part_dir}/{name}")
    if removed:
        log.info("%s: pruned %d staged run folders", pipeline, len(removed))
    return {"removed": removed}


def _run_started(run_id: str, dsn: str | None) -> str:
    try:
        uuid.UUID(run_id)
    except ValueError:
        return ""
    rows = db.query("SELECT started_at FROM runs WHERE run_id = %s", (run_id,), dsn)
    return rows[0]["started_at"].isoformat() if rows else ""

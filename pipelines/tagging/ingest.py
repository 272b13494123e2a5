"""Validate a partition of articles (the corpus, or a day's drop) under the platform's ingest contract.

Every file of the partition is read (JSON lines, JSON, CSV/TSV, Parquet; compressed or not; UTF-8 with or
without a BOM) or reported; every row is either a valid article or quarantined with the first reason of
:data:`~pipelines.tagging.schema.REASONS` that applies. Rows are checked in Python, not SQL: the checks are on
text (share of Chinese characters, undecodable bytes, tag lists), and a day is thousands of articles, not
millions of events.

Staged output of the run (``tagging/staged/<partition>/run=<id>/``): ``articles.parquet`` (``id, title, body,
published_at, tags, content_hash, source, line``) and ``quarantine.parquet``. Readers use
:func:`accepted_articles`, which only ever reads the partition's accepted run.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines import ingest
from pipelines.errors import InputSchemaError, MissingPartitionError
from pipelines.storage import DataRoot
from pipelines.tagging import schema
from pipelines.tagging.text import cjk_share, content_hash, has_control_characters, normalise

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
#: A quarantined record keeps at most this many characters of each text field (an absurd body stays evidence
#: without bloating the quarantine table).
RECORD_CHARS = 2_000
_TAG_SPLIT = re.compile(r"[|,;]")

Row = tuple[str, int, dict[str, Any] | None, str | None]  # source, line, fields (None = malformed), raw text


# ----------------------------------------------------------------------------------------------- reading
def _columns(names: list[str]) -> list[str]:
    return [str(c).strip().lstrip("\ufeff").strip().lower() for c in names]


def _check_columns(item: ingest.DropFile, present: list[str], labelled: bool) -> None:
    required = [*schema.REQUIRED_COLUMNS, *([schema.TAGS_COLUMN] if labelled else [])]
    if len(set(present)) != len(present):
        raise InputSchemaError(f"{item.name}: duplicate column names in header {present}")
    missing = [c for c in required if c not in present]
    if missing:
        raise InputSchemaError(f"{item.name}: required column(s) {missing} missing (has {present})")


def _read_jsonl(item: ingest.DropFile, path: Path) -> Iterator[Row]:
    with ingest.open_text(path, item.compression) as handle:
        for n, line in enumerate(handle, 1):
            if n == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                yield item.name, n, None, line
                continue
            yield item.name, n, (_lower_keys(obj) if isinstance(obj, dict) else None), line


def _lower_keys(obj: dict) -> dict:
    return {str(k).strip().lower(): v for k, v in obj.items()}


def _read_json(item: ingest.DropFile, path: Path) -> Iterator[Row]:
    with ingest.open_text(path, item.compression) as handle:
        text = handle.read().lstrip("\ufeff")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputSchemaError(f"{item.name}: not a JSON document ({ingest.short_error(exc)})") from None
    if isinstance(data, dict) and isinstance(data.get("articles"), list):
        data = data["articles"]
    if not isinstance(data, list):
        raise InputSchemaError(f"{item.name}: a JSON file must hold an array of articles or {{\"articles\": [...]}}")
    for n, obj in enumerate(data, 1):
        yield item.name, n, (_lower_keys(obj) if isinstance(obj, dict) else None), json.dumps(obj, ensure_ascii=False)


def _read_csv(item: ingest.DropFile, path: Path, labelled: bool) -> Iterator[Row]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # absurd bodies are quarantined by length, not crashed on
    with ingest.open_text(path, item.compression) as handle:
        reader = csv.reader(handle, delimiter=item.delimiter)
        header = _columns(next(reader, []))
        if not header:
            return
        _check_columns(item, header, labelled)
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            line = reader.line_num
            if len(fields) != len(header):
                raw = item.delimiter.join(fields)
                yield item.name, line, None, f"{len(fields)} fields for {len(header)} columns: {raw}"
                continue
            yield item.name, line, dict(zip(header, fields, strict=True)), None


def _read_parquet(item: ingest.DropFile, path: Path, labelled: bool) -> Iterator[Row]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = _columns(table.column_names)
    _check_columns(item, names, labelled)
    table = table.rename_columns(names)
    for n, obj in enumerate(table.to_pylist(), 1):
        yield item.name, n, obj, None


def read_rows(item: ingest.DropFile, workdir: Path, labelled: bool) -> list[Row]:
    """Every row of one file (all of it, or an exception: a file is never half read)."""
    path = ingest.plain_path(item, workdir)
    if item.format == "jsonl":
        return list(_read_jsonl(item, path))
    if item.format == "json":
        return list(_read_json(item, path))
    if item.format in ("csv", "tsv"):
        return list(_read_csv(item, path, labelled))
    if item.format == "parquet":
        return list(_read_parquet(item, path, labelled))
    raise ValueError(f"unsupported format {item.format}")


# ----------------------------------------------------------------------------------------------- rows
def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from a Parquet null
        return ""
    return value if isinstance(value, str) else str(value)


def parse_tags(value: Any) -> list[str] | None:
    """A tags value as a list of slugs (lower-case, de-duplicated, in order), or None when it cannot be read."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                return None
        else:
            value = _TAG_SPLIT.split(text)
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
        return None
    out: list[str] = []
    for tag in value:
        slug = tag.strip().lower()
        if slug and slug not in out:
            out.append(slug)
    return out


def parse_published_at(value: Any) -> datetime | None:
    """ISO 8601 (``Z`` or an offset; none means UTC), or None."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = _text(value).strip()
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def classify(fields: dict[str, Any], labelled: bool, known: frozenset[str], max_body: int
             ) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """``(reason, detail, article)``: the first reason that applies, or ``(None, None, the clean article)``."""
    article_id, title, body = _text(fields.get("id")).strip(), _text(fields.get("title")), _text(fields.get("body"))
    raw_tags = fields.get(schema.TAGS_COLUMN)
    texts = [article_id, title, body, _text(fields.get("published_at")),
             raw_tags if isinstance(raw_tags, str) else json.dumps(raw_tags, ensure_ascii=False, default=str)]
    if any(has_control_characters(t) for t in texts):
        return "control_characters", "NUL or another control character in a field", None
    if any("\ufffd" in t for t in texts[:3]):
        return "undecodable_text", "bytes that are not UTF-8 (decoded as U+FFFD)", None
    if not article_id:
        return "missing_id", None, None
    if len(article_id) > schema.MAX_ID_CHARS:
        return "bad_id", f"id of {len(article_id)} characters (limit {schema.MAX_ID_CHARS})", None
    title, body = normalise(title).strip(), normalise(body).strip()
    if not body:
        return "empty_body", None, None
    if len(body) > max_body:
        return "body_too_long", f"body of {len(body):,} characters (limit {max_body:,})", None
    share = cjk_share(title + body)
    if share < schema.MIN_CJK_SHARE:
        return "not_chinese", (f"{share:.0%} Chinese characters among letters "
                               f"(at least {schema.MIN_CJK_SHARE:.0%})"), None
    published = parse_published_at(fields.get("published_at"))
    if published is None:
        return "bad_published_at", f"not an ISO 8601 time: {_text(fields.get('published_at'))[:60]!r}", None
    tags = parse_tags(raw_tags)
    if tags is None:
        return "bad_tags", f"not a list of tags: {texts[4][:80]!r}", None
    if labelled and not tags:
        return "missing_tags", "a training article needs at least one tag", None
    unknown = [t for t in tags if t not in known]
    if unknown:
        return "unknown_tag", f"unknown tag(s) {unknown}; known: {sorted(known)}", None
    return None, None, {"id": article_id, "title": title, "body": body, "published_at": published, "tags": tags,
                        "content_hash": content_hash(title, body)}


def _record(fields: dict[str, Any] | None, raw: str | None) -> dict:
    """The quarantined row as evidence: every field, long texts cut to :data:`RECORD_CHARS`."""
    if fields is None:
        return {"raw": (raw or "")[:RECORD_CHARS]}
    out = {}
    for key, value in fields.items():
        if isinstance(value, str) and len(value) > RECORD_CHARS:
            value = value[:RECORD_CHARS] + f"… ({len(value):,} characters)"
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------------- validator
def validator(partition: str, root: DataRoot, labelled: bool) -> ingest.Validator:
    """The validator of one partition (``labelled``: every article needs tags, as in the corpus)."""

    def validate(staging: ingest.Workspace, result: ingest.IngestResult) -> None:
        files = ingest.read_drop(root, schema.raw_rel_dir(partition), FORMATS, result, "article files")
        known = frozenset(schema.known_tags())
        max_body = schema.max_body_chars()
        quarantined: list[dict] = []
        candidates: list[tuple[str, int, dict, dict]] = []  # source, line, article, fields
        empty_files = []
        for item in files:
            try:
                rows = read_rows(item, staging.workdir, labelled)
            except InputSchemaError as exc:
                result.unread(item.name, "bad_header", str(exc))
                continue
            except Exception as exc:  # truncated gzip, corrupt Parquet, a broken CSV quote: report the file
                result.unread(item.name, "unreadable_file", ingest.short_error(exc))
                continue
            result.files.append(item.name)
            if not rows:
                empty_files.append(item.name)
            for source, line, fields, raw in rows:
                result.rows_read += 1
                if fields is None:
                    quarantined.append({"source": source, "reason": "malformed_row",
                                        "detail": f"line {line}: not an article record", "record": _record(None, raw)})
                    continue
                reason, detail, article = classify(fields, labelled, known, max_body)
                if reason:
                    quarantined.append({"source": source, "reason": reason,
                                        "detail": f"line {line}" + (f": {detail}" if detail else ""),
                                        "record": _record(fields, raw)})
                else:
                    candidates.append((source, line, article, fields))
        articles = _resolve_ids(candidates, quarantined)
        for row in quarantined:
            result.add(row["reason"])
        result.rows_valid = len(articles)
        tag_counts = Counter(t for a in articles for t in a["tags"])
        result.extra.update({"articles": len(articles), "labelled": sum(bool(a["tags"]) for a in articles),
                             "two_tag_articles": sum(len(a["tags"]) > 1 for a in articles),
                             "tags": dict(tag_counts.most_common()), "empty_files": empty_files})
        write_articles(staging.path("articles.parquet"), articles)
        ingest.quarantine_from_rows(staging.path("quarantine.parquet"), quarantined)

    return validate


def _resolve_ids(candidates: list[tuple[str, int, dict, dict]], quarantined: list[dict]) -> list[dict]:
    """One article per id: identical re-sends are ``duplicate`` (the first kept); the same id with other content
    or other tags is ``conflicting_id`` for every row of it (which one is right cannot be known)."""
    by_id: dict[str, list[tuple[str, int, dict, dict]]] = {}
    for row in candidates:
        by_id.setdefault(row[2]["id"], []).append(row)
    articles = []
    for rows in by_id.values():
        identities = {(a["content_hash"], tuple(sorted(a["tags"]))) for _, _, a, _ in rows}
        if len(identities) > 1:
            for source, line, _, fields in rows:
                quarantined.append({"source": source, "reason": "conflicting_id",
                                    "detail": f"line {line}: id sent {len(rows)} times with different content or tags",
                                    "record": _record(fields, None)})
            continue
        articles.append({**rows[0][2], "source": rows[0][0], "line": rows[0][1]})
        for source, line, _, fields in rows[1:]:
            quarantined.append({"source": source, "reason": "duplicate",
                                "detail": f"line {line}: same article as {rows[0][0]} line {rows[0][1]}",
                                "record": _record(fields, None)})
    return articles


def write_articles(path: Path, articles: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema_ = pa.schema([("id", pa.string()), ("title", pa.string()), ("body", pa.string()),
                         ("published_at", pa.timestamp("us", tz="UTC")), ("tags", pa.list_(pa.string())),
                         ("content_hash", pa.string()), ("source", pa.string()), ("line", pa.int64())])
    columns = {name: [a[name] for a in articles] for name in schema_.names}
    pq.write_table(pa.table(columns, schema=schema_), path, compression="zstd")
    return path


# ----------------------------------------------------------------------------------------------- entry points
def _partition(partition: str) -> tuple[str, bool]:
    labelled = partition == schema.CORPUS_PARTITION
    if not labelled:
        datetime.strptime(partition, "%Y-%m-%d")  # a day, or ValueError
    return partition, labelled


def inspect_partition(partition: str, root: DataRoot | None = None, max_bad_share: float = 0.05,
                      workspace: ingest.Workspace | None = None) -> ingest.IngestResult:
    """Validate without writing anything (a preview; what unit tests call)."""
    partition, labelled = _partition(partition)
    return ingest.inspect(schema.PIPELINE, partition, validator(partition, root or DataRoot(), labelled),
                          max_bad_share=max_bad_share, benign_reasons=schema.BENIGN_REASONS, workspace=workspace)


def validate_partition(partition: str, root: DataRoot | None = None, max_bad_share: float = 0.05,
                       interval=None) -> ingest.IngestResult:
    """Validate, stage and commit one partition under the ingest contract.

    Raises:
        MissingPartitionError: no file in the partition's folder (late input; retried).
        RunRejected: bad rows above ``max_bad_share``, no valid article, or a file that cannot be read.
    """
    partition, labelled = _partition(partition)
    root = root or DataRoot()
    return ingest.run_ingest(schema.PIPELINE, partition, validator(partition, root, labelled),
                             max_bad_share=max_bad_share, params={"partition": partition, "labelled": labelled},
                             interval=interval, root=root, benign_reasons=schema.BENIGN_REASONS)


def accepted_articles(partition: str, root: DataRoot | None = None) -> Path:
    """The accepted run's ``articles.parquet`` of a partition (a local path)."""
    root = root or DataRoot()
    row = ingest.accepted(schema.PIPELINE, partition)
    if row is None:
        status = ingest.partition_status(schema.PIPELINE, partition)
        why = f"its last ingest was {status['status']}: {status['error']}" if status else "it was never validated"
        raise MissingPartitionError(f"tagging {partition} has no accepted articles ({why})")
    return root.local_dir(ingest.staged_rel_of(row, root)) / "articles.parquet"


def read_articles(path: Path):
    """Staged articles as a DataFrame (tags as Python lists)."""
    import pyarrow.parquet as pq

    frame = pq.read_table(path).to_pandas()
    frame["tags"] = [list(t) if t is not None else [] for t in frame["tags"]]
    return frame

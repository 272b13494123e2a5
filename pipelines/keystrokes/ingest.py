"""Validate a paged training set or a test document under the platform's ingest contract.

One partition per dataset: ``train-<hash of the start URL>`` / ``test-<hash>`` (:func:`schema.partition_key`).
A row is one attempt. The training validator crawls the pages (:mod:`~pipelines.keystrokes.pager`), checks
and replays every attempt (:func:`~pipelines.keystrokes.replay.check_attempt`), merges a user's attempts from
all their pages, quarantines each bad attempt with its reason (and a repeated one as ``duplicate_attempt``),
then drops users with fewer than ``min_samples`` valid attempts on purpose: their attempts are quarantined as
``too_few_samples`` (benign) and counted. Staged: ``samples.parquet`` (one row per kept attempt: ``sample_id``,
``user_label``, ``page``, ``page_index``, ``attempt_index``, ``user_attempt``, ``chars``, ``times_us``),
``users.parquet`` and ``crawl.json``.

The test validator keeps every attempt in its place: ``attempts.parquet`` has one row per position, valid or
not, with the reason; a prediction answers ``"Invalid Input"`` for the invalid ones. A page-level problem (a
loop, the page cap, an HTTP error after retries, a page that is not JSON or lacks a required key) stops the
ingest with an error naming the page, before anything is published.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pipelines import ingest
from pipelines.keystrokes import schema
from pipelines.keystrokes.pager import CrawlStats, FetchConfig, Pager, check_url
from pipelines.keystrokes.replay import Attempt, check_attempt, format_time_us
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

_FLUSH_ROWS = 20_000


def sample_id(label: str, attempt: Attempt) -> str:
    """A stable id of an attempt: the same events of the same user always get the same id."""
    digest = hashlib.sha1(label.encode())
    digest.update("\x1f".join(attempt.chars).encode())
    digest.update(",".join(map(str, attempt.times_us)).encode())
    return digest.hexdigest()[:20]


def events_json(chars, times_us) -> list[dict]:
    return [{"character": c, "typed_at": format_time_us(int(t))} for c, t in zip(chars, times_us, strict=True)]


def _samples_schema():
    import pyarrow as pa

    return pa.schema([("sample_id", pa.string()), ("user_label", pa.string()), ("page", pa.string()),
                      ("page_index", pa.int32()), ("attempt_index", pa.int32()), ("user_attempt", pa.int32()),
                      ("chars", pa.list_(pa.string())), ("times_us", pa.list_(pa.int64()))])


class _SampleWriter:
    """Valid attempts streamed to Parquet in row groups (bounded memory whatever the crawl's size)."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.schema = _samples_schema()
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self.rows: dict[str, list] = {name: [] for name in self.schema.names}

    def add(self, **row: Any) -> None:
        for name in self.schema.names:
            self.rows[name].append(row[name])
        if len(self.rows["sample_id"]) >= _FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.rows["sample_id"]:
            self.writer.write_table(pa.table(self.rows, schema=self.schema))
            self.rows = {name: [] for name in self.schema.names}

    def close(self) -> None:
        self.flush()
        self.writer.close()


def _bad_row(source: str, reason: str, detail: str, record: dict) -> dict:
    return {"source": source, "reason": reason, "detail": detail, "record": record}


def train_validator(url: str, root: DataRoot, config: FetchConfig, min_samples: int = schema.DEFAULT_MIN_SAMPLES,
                    max_gap_ms: float = schema.MAX_GAP_MS) -> ingest.Validator:
    """The validator of a paged training set starting at ``url`` (see the module docstring)."""
    url = check_url(url)

    def validate(staging: ingest.Workspace, result: ingest.IngestResult) -> None:
        import pyarrow.parquet as pq
        from tqdm import tqdm

        stats = CrawlStats(url)
        bad: list[dict] = []
        seen: set[tuple[str, str]] = set()
        valid_per_user: Counter = Counter()
        pages_per_user: Counter = Counter()
        first_seen: dict[str, int] = {}
        raw_path = staging.workdir / "valid.parquet"
        writer = _SampleWriter(raw_path)
        try:
            with Pager(config, root) as pager, tqdm(desc="keystrokes pages", unit="page", file=sys.stderr,
                                                    disable=None) as bar:
                for page in pager.crawl(url, stats):
                    bar.update()
                    label = page.doc["user_label"]
                    pages_per_user[label] += 1
                    first_seen.setdefault(label, page.index)
                    result.files.append(page.url)
                    for a, raw in enumerate(page.doc["user_data"]):
                        result.rows_read += 1
                        checked = check_attempt(raw, max_gap_ms)
                        record = {"user_label": label, "page": page.name, "attempt_index": a}
                        if not isinstance(checked, Attempt):
                            bad.append(_bad_row(page.url, checked.reason, checked.detail, {**record, "events": raw}))
                            continue
                        sid = sample_id(label, checked)
                        if (label, sid) in seen:
                            bad.append(_bad_row(page.url, "duplicate_attempt",
                                                f"the same events as attempt {sid} of this user", {**record,
                                                                                                  "sample_id": sid}))
                            continue
                        seen.add((label, sid))
                        valid_per_user[label] += 1
                        writer.add(sample_id=sid, user_label=label, page=page.name, page_index=page.index,
                                   attempt_index=a, user_attempt=0, chars=list(checked.chars),
                                   times_us=list(checked.times_us))
        finally:
            writer.close()
        dropped = {u: n for u, n in valid_per_user.items() if n < min_samples}
        kept_writer = _SampleWriter(staging.path("samples.parquet"))
        order: Counter = Counter()
        try:
            for batch in pq.ParquetFile(raw_path).iter_batches(batch_size=_FLUSH_ROWS):
                for row in batch.to_pylist():
                    label = row["user_label"]
                    if label in dropped:
                        bad.append(_bad_row(
                            row["page"], "too_few_samples",
                            f"user {label} has {dropped[label]} valid attempt(s), fewer than min_samples="
                            f"{min_samples}: dropped on purpose",
                            {"user_label": label, "page": row["page"], "attempt_index": row["attempt_index"],
                             "events": events_json(row["chars"], row["times_us"])}))
                        continue
                    row["user_attempt"] = order[label]
                    order[label] += 1
                    kept_writer.add(**row)
        finally:
            kept_writer.close()
        raw_path.unlink(missing_ok=True)
        result.rows_valid = sum(order.values())
        for row in bad:
            result.add(row["reason"])
        ingest.quarantine_from_rows(staging.path("quarantine.parquet"), bad)
        _write_users(staging.path("users.parquet"), order, pages_per_user, valid_per_user, dropped, first_seen)
        (staging.path("crawl.json")).write_text(json.dumps(stats.as_dict(), indent=2))
        fingerprint = hashlib.sha256("\n".join(sorted(f"{u}:{s}" for u, s in seen if u not in dropped)).encode())
        result.extra.update({
            "kind": "train", "url": url, "pages": stats.pages, "users": len(order), "users_dropped": len(dropped),
            "users_on_several_pages": sum(1 for n in pages_per_user.values() if n > 1),
            "min_samples": min_samples, "fingerprint": fingerprint.hexdigest()[:16], "crawl": stats.as_dict()})

    return validate


def _write_users(path: Path, kept: Counter, pages: Counter, valid: Counter, dropped: dict, first: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = sorted(pages, key=lambda u: first[u])
    pq.write_table(pa.table({
        "user_label": pa.array(labels, pa.string()),
        "pages": pa.array([pages[u] for u in labels], pa.int32()),
        "valid_attempts": pa.array([valid.get(u, 0) for u in labels], pa.int32()),
        "kept_attempts": pa.array([kept.get(u, 0) for u in labels], pa.int32()),
        "dropped": pa.array([u in dropped for u in labels], pa.bool_()),
    }), path)


def test_validator(url: str, root: DataRoot, config: FetchConfig,
                   max_gap_ms: float = schema.MAX_GAP_MS) -> ingest.Validator:
    """The validator of a test document ``{"attempts": [...]}``: every attempt keeps its position."""
    url = check_url(url)

    def validate(staging: ingest.Workspace, result: ingest.IngestResult) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        with Pager(config, root) as pager:
            doc, size, cached = pager.document(url, ("attempts",))
        result.files.append(url)
        bad: list[dict] = []
        cols: dict[str, list] = {"position": [], "valid": [], "reason": [], "detail": [], "sample_id": [],
                                 "chars": [], "times_us": []}
        for i, raw in enumerate(doc["attempts"]):
            result.rows_read += 1
            checked = check_attempt(raw, max_gap_ms)
            cols["position"].append(i)
            if isinstance(checked, Attempt):
                result.rows_valid += 1
                cols["valid"].append(True)
                cols["reason"].append(None)
                cols["detail"].append(None)
                cols["sample_id"].append(sample_id("", checked))
                cols["chars"].append(list(checked.chars))
                cols["times_us"].append(list(checked.times_us))
            else:
                result.add(checked.reason)
                bad.append(_bad_row(url, checked.reason, checked.detail, {"position": i, "events": raw}))
                cols["valid"].append(False)
                cols["reason"].append(checked.reason)
                cols["detail"].append(checked.detail)
                cols["sample_id"].append(None)
                cols["chars"].append(None)
                cols["times_us"].append(None)
        table = pa.table({
            "position": pa.array(cols["position"], pa.int32()), "valid": pa.array(cols["valid"], pa.bool_()),
            "reason": pa.array(cols["reason"], pa.string()), "detail": pa.array(cols["detail"], pa.string()),
            "sample_id": pa.array(cols["sample_id"], pa.string()),
            "chars": pa.array(cols["chars"], pa.list_(pa.string())),
            "times_us": pa.array(cols["times_us"], pa.list_(pa.int64()))})
        pq.write_table(table, staging.path("attempts.parquet"), compression="zstd")
        ingest.quarantine_from_rows(staging.path("quarantine.parquet"), bad)
        result.extra.update({"kind": "test", "url": url, "bytes": size, "from_cache": cached,
                             "attempts": result.rows_read})

    return validate


def validator(kind: str, url: str, root: DataRoot, config: FetchConfig, min_samples: int) -> ingest.Validator:
    if kind == "train":
        return train_validator(url, root, config, min_samples)
    return test_validator(url, root, config)


def inspect_url(kind: str, url: str, root: DataRoot | None = None, config: FetchConfig | None = None,
                min_samples: int = schema.DEFAULT_MIN_SAMPLES, max_bad_share: float = 0.05,
                workspace: ingest.Workspace | None = None) -> ingest.IngestResult:
    """Validate a dataset without PostgreSQL (a preview; what unit tests and fuzzers call)."""
    return ingest.inspect(schema.PIPELINE, schema.partition_key(kind, url),
                          validator(kind, url, root or DataRoot(), config or FetchConfig(), min_samples),
                          max_bad_share=max_bad_share, benign_reasons=schema.BENIGN_REASONS, workspace=workspace)


def ingest_url(kind: str, url: str, *, max_bad_share: float, min_samples: int = schema.DEFAULT_MIN_SAMPLES,
               config: FetchConfig | None = None, root: DataRoot | None = None, interval=None
               ) -> ingest.IngestResult:
    """Validate a dataset under the ingest contract: staged, quarantine and status committed last.

    Raises:
        RunRejected: too many bad attempts, no valid one, or a broken page (loop, cap, not JSON, missing key).
        MissingPartitionError: the first page (or a linked one) does not exist.
        PageFetchError: a page kept failing after the retries.
    """
    url = check_url(url)
    root = root or DataRoot()
    config = config or FetchConfig()
    params = {"kind": kind, "url": url, "min_samples": min_samples, "max_pages": config.max_pages,
              "refresh": config.refresh}
    return ingest.run_ingest(schema.PIPELINE, schema.partition_key(kind, url),
                             validator(kind, url, root, config, min_samples), max_bad_share=max_bad_share,
                             params=params, interval=interval, root=root, benign_reasons=schema.BENIGN_REASONS)

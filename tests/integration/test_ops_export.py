"""The CSV export streams out of PostgreSQL: memory stays flat whatever the table's size, the bytes equal the
table row for row, and a client that goes away stops the COPY (its connection is released)."""

from __future__ import annotations

import csv
import hashlib
import io
import time
import tracemalloc

import pytest

from pipelines import db
from pipelines.ops import catalog, queries

pytestmark = pytest.mark.integration

TABLE = catalog.CATALOG["sociodemo"].tables[0]
ROWS = 300_000


def _fill(n: int) -> None:
    """``n`` predictions written by PostgreSQL itself (fast), with texts that need CSV quoting."""
    from pipelines.migrate import upgrade

    upgrade()
    with db.transaction() as cur:
        cur.execute("TRUNCATE sociodemo_predictions")
        cur.execute("""INSERT INTO sociodemo_predictions
                       SELECT lpad(i::text, 8, '0'), (i %% 1000) / 1000.0, i %% 4,
                              ARRAY[0.1, 0.2, 0.3, 0.4], 'cat,boost "q"', 'v' || (i %% 7), DATE '2026-03-01' + i %% 30,
                              TIMESTAMPTZ '2026-03-02 00:00:00+00'
                       FROM generate_series(1, %s) AS i""", (n,))


def _consume(chunks) -> tuple[int, str, int]:
    """(bytes, sha256, peak traced bytes) of a stream consumed chunk by chunk, kept nowhere."""
    digest, size = hashlib.sha256(), 0
    tracemalloc.start()
    try:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return size, digest.hexdigest(), peak


def test_memory_stays_flat_and_the_csv_equals_the_table(pg_dsn):
    _fill(ROWS // 10)
    small_bytes, _, small_peak = _consume(queries.export_csv(pg_dsn, TABLE))
    _fill(ROWS)
    big_bytes, big_sha, big_peak = _consume(queries.export_csv(pg_dsn, TABLE))
    assert big_bytes > 9 * small_bytes and big_bytes > 20_000_000
    assert big_peak < 3_000_000, f"peak {big_peak:,} bytes while streaming {big_bytes:,}"  # a few 64 KB chunks
    assert big_peak < 2 * small_peak + 1_000_000  # ten times the rows, not more memory

    # Row for row against the table, both sides streamed (a server-side cursor on the reference side).
    text = io.TextIOWrapper(io.BufferedReader(_Chunks(queries.export_csv(pg_dsn, TABLE))), encoding="utf-8",
                            newline="")
    reader = csv.reader(text)
    header = next(reader)
    assert header == ["user_id", "sex_proba", "age_class", "age_class_proba", "model_name", "model_version", "as_of",
                      "scored_at"]
    conn = db.connect(pg_dsn)
    n = 0
    try:
        with conn.cursor(name="reference") as cur:
            cur.itersize = 20_000
            cur.execute("SELECT user_id, sex_proba, age_class, age_class_proba, model_name, model_version, "
                        "as_of::text, scored_at FROM sociodemo_predictions ORDER BY user_id")
            for expected, got in zip(cur, reader, strict=True):
                n += 1
                assert got[0] == expected[0] and float(got[1]) == expected[1] and int(got[2]) == expected[2]
                assert [float(x) for x in got[3].strip("{}").split(",")] == [float(x) for x in expected[3]]
                assert got[4:7] == [expected[4], expected[5], expected[6]] and got[4] == 'cat,boost "q"'
    finally:
        conn.close()
    assert n == ROWS
    again = _consume(queries.export_csv(pg_dsn, TABLE))
    assert again[1] == big_sha  # ordered by key: the same table gives the same bytes


class _Chunks(io.RawIOBase):
    """A readable stream over an iterator of byte chunks (to parse the export as it arrives)."""

    def __init__(self, chunks) -> None:
        self.chunks, self.rest = iter(chunks), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.rest:
            try:
                self.rest = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self.rest))
        buffer[:n], self.rest = self.rest[:n], self.rest[n:]
        return n


def _exports_running(dsn: str) -> int:
    rows = db.query("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'ubm-ops-page' "
                    "AND datname = current_database()", dsn=dsn)
    return rows[0]["n"]


def test_a_client_that_goes_away_stops_the_copy(pg_dsn):
    _fill(ROWS)
    stream = queries.export_csv(pg_dsn, TABLE)
    next(stream)
    next(stream)
    assert _exports_running(pg_dsn) == 1
    stream.close()
    deadline = time.monotonic() + 10
    while _exports_running(pg_dsn) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _exports_running(pg_dsn) == 0


def test_a_missing_table_is_refused_before_streaming(pg_dsn):
    from pipelines.migrate import upgrade

    upgrade()
    with pytest.raises(LookupError, match="does not exist"):
        next(queries.export_csv(pg_dsn, catalog.ServingTable("no_such_table", "id", "text", "id", ("id",))))
    assert _exports_running(pg_dsn) == 0

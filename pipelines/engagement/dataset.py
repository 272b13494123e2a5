"""What training and scoring read: accepted month files, the time split, streamed batches, bounded samples.

Readers use **accepted** partitions only (``ingest_partitions``), never whatever lies in a folder. A month may
hold posts from several partitions (a historical file and the days after it): :func:`prepare` gives every
month of a split exactly one copy of each post, rewriting (with DuckDB, spilling if need be) only months
where a historical file meets another partition (days cannot share a post: each holds its own day only);
the rest are read where they are.

The split is by **time**, never at random (votes drift): the last ``test_months`` calendar months up to the
as-of day are the test months, the ``valid_months`` before them validation, everything before training
(optionally only the last ``train_months``). Rows after the as-of day are never read.

Everything here streams (record batches of a row group) or is bounded (samples: the ``k`` posts with the
smallest seeded hash of their id, a DuckDB top-k, so the sample does not depend on file order or size).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from pipelines import duck, ingest
from pipelines.engagement import schema
from pipelines.errors import MissingPartitionError, UsageError
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

COLUMNS = ("post_id", "time_created", "up_votes", "title", "over_18", "author")


@dataclass(frozen=True)
class MonthFile:
    """One staged Parquet file of one month, from one accepted partition."""

    month: str
    path: Path
    partition: str
    rows: int


def accepted_month_files(root: DataRoot | None = None, dsn: str | None = None) -> list[MonthFile]:
    """Every staged post file of every accepted partition (days and historical files), by month."""
    import pyarrow.parquet as pq

    root = root or DataRoot()
    out = []
    for partition, row in ingest.accepted_partitions(schema.PIPELINE, dsn=dsn).items():
        folder = root.local_dir(ingest.staged_rel_of(row, root))
        for path in sorted(folder.glob("posts-*.parquet")):
            month = schema.month_of_file(path.name)
            if month:
                out.append(MonthFile(month, path, partition, pq.ParquetFile(path).metadata.num_rows))
    return out


# ----------------------------------------------------------------------------------------------- split
@dataclass(frozen=True)
class TimeSplit:
    """Months of each side of the split and the as-of bound (rows at or after ``end`` are never read)."""

    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]
    as_of: date
    end: int = field(init=False)

    def __post_init__(self) -> None:
        stop = datetime.combine(self.as_of + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        object.__setattr__(self, "end", int(stop.timestamp()))

    def as_dict(self) -> dict:
        return {"train": list(self.train), "valid": list(self.valid), "test": list(self.test),
                "as_of": self.as_of.isoformat(), "end": self.end}


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def time_split(months, as_of: date, valid_months: int = 1, test_months: int = 1,
               train_months: int | None = None) -> TimeSplit:
    """Split the months holding data (up to ``as_of``'s month) into train, valid and test, in time order."""
    if valid_months < 1 or test_months < 1:
        raise UsageError("valid_months and test_months must be at least 1")
    available = sorted({m for m in months if m <= month_of(as_of)})
    need = valid_months + test_months + 1
    if len(available) < need:
        raise MissingPartitionError(
            f"engagement: {len(available)} month(s) of accepted posts up to {as_of} ({available}); a time split "
            f"with {valid_months} validation and {test_months} test month(s) needs at least {need}")
    test = available[-test_months:]
    valid = available[-(test_months + valid_months):-test_months]
    train = available[:-(test_months + valid_months)]
    if train_months:
        train = train[-train_months:]
    return TimeSplit(tuple(train), tuple(valid), tuple(test), as_of)


# ----------------------------------------------------------------------------------------------- prepared
@dataclass
class Prepared:
    """Per month, the files holding exactly one copy of each of its posts."""

    files: dict[str, list[Path]]
    split: TimeSplit

    def of(self, months) -> list[Path]:
        return [p for m in months for p in self.files.get(m, [])]

    def rows(self, months) -> int:
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.of(months))


def prepare(files: list[MonthFile], split: TimeSplit, workdir: Path) -> Prepared:
    """The split's months, each as files with no post twice (months from several partitions deduplicated into
    ``workdir``, the first copy in partition order kept; the others read in place)."""
    by_month: dict[str, list[MonthFile]] = defaultdict(list)
    for f in files:
        by_month[f.month].append(f)
    wanted = [*split.train, *split.valid, *split.test]
    out: dict[str, list[Path]] = {}
    con = None
    try:
        for month in wanted:
            group = sorted(by_month.get(month, []), key=lambda f: (f.partition, f.path.name))
            partitions = {f.partition for f in group}
            # Day partitions cannot share a post (each holds its own day only); a historical file can.
            if len(partitions) <= 1 or not any(schema.is_file_partition(p) for p in partitions):
                out[month] = [f.path for f in group]
                continue
            if con is None:
                workdir.mkdir(parents=True, exist_ok=True)
                con = duck.connect(workdir, memory_limit="1GB")
            dest = workdir / f"posts-{month}--dedup.parquet"
            order = ", ".join(f"({i}, {duck.sql_path(f.path)})" for i, f in enumerate(group))
            con.execute(f"""COPY (
                SELECT * EXCLUDE (filename, file_row_number, k) FROM (
                    SELECT p.*, o.k FROM read_parquet({duck.sql_paths([f.path for f in group])}, filename = true,
                                                      file_row_number = true) p
                    JOIN (VALUES {order}) o(k, path) ON o.path = p.filename)
                QUALIFY row_number() OVER (PARTITION BY post_id ORDER BY k, file_row_number) = 1
                ORDER BY time_created, post_id
            ) TO {duck.sql_path(dest)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 131072)""")
            out[month] = [dest]
    finally:
        if con is not None:
            con.close()
    return Prepared(out, split)


# ----------------------------------------------------------------------------------------------- reading
def iter_batches(paths: list[Path], end: int | None, batch_rows: int = 8192,
                 columns: tuple[str, ...] = COLUMNS) -> Iterator:
    """Record batches of ``paths`` in order (file, then row group), rows before ``end`` only."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=list(columns)):
            if end is not None:
                batch = batch.filter(pc.less(batch["time_created"], end))
            if batch.num_rows:
                yield batch


def row_groups(paths: list[Path]) -> list[tuple[Path, int]]:
    """Every (file, row group) of ``paths``: the units a streamed loader shards across workers."""
    import pyarrow.parquet as pq

    return [(path, g) for path in paths for g in range(pq.ParquetFile(path).metadata.num_row_groups)]


def read_row_group(path: Path, group: int, end: int | None, columns: tuple[str, ...] = COLUMNS):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path).read_row_group(group, columns=list(columns))
    return table.filter(pc.less(table["time_created"], end)) if end is not None else table


def _salt(seed: int, purpose: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(f"{seed}:{purpose}".encode(), digest_size=8).digest(), "little") >> 1


def sample(paths: list[Path], end: int | None, k: int, seed: int, purpose: str,
           columns: tuple[str, ...] = COLUMNS, workdir: Path | None = None):
    """The ``k`` posts of ``paths`` with the smallest ``post_id XOR salt(seed, purpose)``: a uniform sample
    (post ids are hashes), the same whatever the file order, found by a bounded top-k. Sorted by that key."""
    import tempfile

    if not paths:
        raise MissingPartitionError("engagement: no posts to sample")
    cols = ", ".join(columns)
    with tempfile.TemporaryDirectory(prefix="engagement-sample-") as tmp:
        con = duck.connect(Path(workdir or tmp), memory_limit="1GB")
        try:
            return con.sql(f"""SELECT {cols} FROM read_parquet({duck.sql_paths(paths)})
                               WHERE $end IS NULL OR time_created < $end
                               ORDER BY xor(post_id, $salt), post_id LIMIT $k""",
                           params={"end": end, "salt": _salt(seed, purpose), "k": int(k)}).to_arrow_table()
        finally:
            con.close()


def author_stats(paths: list[Path], end: int | None, prior_weight: float = 20.0):
    """:class:`~pipelines.engagement.features.AuthorStats` and the global mean and SD of the target over
    ``paths`` (the training months): one DuckDB aggregation, memory by author, not by row. Sums are exact
    (DECIMAL of the target rounded to 1e-9), so the statistics do not depend on the order threads add rows in
    and training is bit-for-bit reproducible."""
    import tempfile

    from pipelines.engagement.features import AuthorStats

    with tempfile.TemporaryDirectory(prefix="engagement-stats-") as tmp:
        con = duck.connect(Path(tmp), memory_limit="1GB")
        try:
            table = con.sql(f"""
                SELECT author, count(*)::DOUBLE AS n, sum(y)::DOUBLE AS s, sum(y * y)::DOUBLE AS ss
                FROM (SELECT author, round(ln(1 + up_votes), 9)::DECIMAL(18, 9) AS y
                      FROM read_parquet({duck.sql_paths(paths)}) WHERE $end IS NULL OR time_created < $end)
                GROUP BY author ORDER BY author""", params={"end": end}).to_arrow_table()
        finally:
            con.close()
    n = float(np.sum(table["n"].to_numpy()))
    if not n:
        raise MissingPartitionError("engagement: no training rows")
    mean = float(np.sum(table["s"].to_numpy())) / n
    var = max(float(np.sum(table["ss"].to_numpy())) / n - mean * mean, 0.0)
    stats = AuthorStats.from_table(table.select(["author", "n", "s"]), mean, prior_weight)
    return stats, {"rows": int(n), "mean": mean, "sd": float(np.sqrt(var)) or 1.0}


def monthly_means(paths_by_month: dict[str, list[Path]], end: int | None) -> dict[str, dict]:
    """Rows and mean target per month (the drift chart)."""
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory(prefix="engagement-months-") as tmp:
        con = duck.connect(Path(tmp), memory_limit="512MB")
        try:
            for month, paths in sorted(paths_by_month.items()):
                if not paths:
                    continue
                n, mean = con.sql(f"SELECT count(*), avg(round(ln(1 + up_votes), 9)::DECIMAL(18, 9))::DOUBLE "
                                  f"FROM read_parquet({duck.sql_paths(paths)}) WHERE $end IS NULL OR "
                                  "time_created < $end", params={"end": end}).fetchall()[0]
                out[month] = {"rows": int(n), "mean_log1p": None if mean is None else float(mean)}
        finally:
            con.close()
    return out


def truth_for(post_ids: np.ndarray, truth_paths: list[Path]) -> dict[int, float]:
    """The generator's expected log1p(up_votes) of the given posts (generated data only)."""
    import tempfile

    import pyarrow as pa

    if not truth_paths:
        return {}
    with tempfile.TemporaryDirectory(prefix="engagement-truth-") as tmp:
        con = duck.connect(Path(tmp), memory_limit="512MB")
        try:
            wanted = pa.table({"post_id": pa.array(np.asarray(post_ids, dtype=np.int64))})
            con.register("wanted", wanted)
            rows = con.sql(f"SELECT t.post_id, any_value(t.expected_log1p) FROM read_parquet("
                           f"{duck.sql_paths(truth_paths)}) t SEMI JOIN wanted USING (post_id) "
                           "GROUP BY t.post_id").fetchall()
        finally:
            con.close()
    return {int(k): float(v) for k, v in rows}

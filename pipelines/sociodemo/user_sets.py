"""Per-user sets of watched videos, for set models (DeepSets + Time2Vec): one row per user, list columns.

For each user with an event in the window: the videos they watched, at most ``max_items`` of them (most watch
time first, ties by video index), each with its video index, category index, share of the user's watch time
in the window, number of views and first/last view time (epoch seconds, UTC). Indices are dense, 0-based and
come with their vocabulary (``videos.parquet``: ``video_idx``, ``rutube_video_id``, ``category``,
``category_idx``, by id order of the current catalogue), written next to the sets so a model keeps the mapping
it was trained with.

Recomputed from the staged events (not incremental). Per-user ordered lists do not spill to disk in DuckDB, so
users are processed in contiguous ``viewer_uid`` ranges of about :data:`EVENTS_PER_RANGE` events (staged files
are sorted by ``viewer_uid``, so a range reads only its own row groups) and the parts are streamed into one
file in ``viewer_uid`` order.
"""

from __future__ import annotations

import itertools
import logging
import math
import tempfile
from datetime import date, timedelta
from pathlib import Path

from pipelines import duck
from pipelines.errors import MissingPartitionError
from pipelines.sociodemo import schema
from pipelines.sociodemo.validate import VIDEOS_SQL, accepted_days, staged_events_path, video_info_path
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

#: Events per ``viewer_uid`` range: bounds DuckDB's memory for the per-user lists (about 1 GB at 5M events).
EVENTS_PER_RANGE = 5_000_000

_SETS = """
WITH ev AS (
    SELECT viewer_uid, rutube_video_id, total_watchtime, event_timestamp FROM {events} WHERE {users}
), per_video AS (
    SELECT viewer_uid, rutube_video_id, sum(total_watchtime) AS watchtime, count(*) AS views,
           min(event_timestamp) AS first_ts, max(event_timestamp) AS last_ts
    FROM ev GROUP BY viewer_uid, rutube_video_id
), ranked AS (
    SELECT p.*, v.video_idx, v.category_idx,
           sum(p.watchtime) OVER (PARTITION BY p.viewer_uid) AS user_watchtime,
           count(*) OVER (PARTITION BY p.viewer_uid) AS user_videos,
           row_number() OVER (PARTITION BY p.viewer_uid ORDER BY p.watchtime DESC, v.video_idx) AS rank
    FROM per_video AS p JOIN vocab AS v ON v.rutube_video_id = p.rutube_video_id
)
SELECT viewer_uid,
       CAST(any_value(user_videos) AS BIGINT) AS n_videos,
       CAST(any_value(user_watchtime) AS BIGINT) AS total_watchtime,
       list(video_idx ORDER BY rank) AS video_idx,
       list(category_idx ORDER BY rank) AS category_idx,
       list(coalesce(CAST(watchtime AS DOUBLE) / nullif(CAST(user_watchtime AS DOUBLE), 0), 0.0) ORDER BY rank)
           AS watch_share,
       list(CAST(views AS INTEGER) ORDER BY rank) AS views,
       list(CAST(epoch(first_ts) AS BIGINT) ORDER BY rank) AS first_ts,
       list(CAST(epoch(last_ts) AS BIGINT) ORDER BY rank) AS last_ts
FROM ranked WHERE rank <= {max_items}
GROUP BY viewer_uid
ORDER BY viewer_uid
"""

_VOCAB = """
CREATE TABLE vocab AS
WITH videos AS ({videos})
SELECT CAST(row_number() OVER (ORDER BY video_id) - 1 AS INTEGER) AS video_idx, video_id AS rutube_video_id,
       category,
       CAST(dense_rank() OVER (ORDER BY category NULLS LAST) - 1 AS SMALLINT) AS category_idx
FROM videos
"""


def build_user_sets(as_of: date, root: DataRoot | None = None, max_items: int = 128,
                    window_days: int | None = None) -> str:
    """Write the user sets as of ``as_of`` (accepted days up to it, or the last ``window_days``); returns the URI.

    Output: ``sociodemo/user_sets/as_of=<day>/window=<all|Nd>/max_items=<k>/user_sets.parquet`` with
    ``viewer_uid`` BIGINT, ``n_videos`` (before truncation), ``total_watchtime`` BIGINT and the lists
    ``video_idx`` INTEGER[], ``category_idx`` SMALLINT[], ``watch_share`` DOUBLE[], ``views`` INTEGER[],
    ``first_ts``/``last_ts`` BIGINT[]; and ``videos.parquet``, the vocabulary.

    Raises:
        MissingPartitionError: ``as_of`` has no accepted staged events.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    root = root or DataRoot()
    days = accepted_days(root, through=as_of)
    if window_days is not None:
        days = [d for d in days if d > as_of - timedelta(days=window_days)]
    if as_of not in days:
        raise MissingPartitionError(f"{as_of} has no accepted staged events (not validated yet, or rejected)")
    rel_dir = schema.user_sets_rel_dir(as_of, max_items, window_days)
    videos = VIDEOS_SQL.format(path=duck.sql_path(video_info_path(root)))
    events = duck.read_parquet([staged_events_path(root, d) for d in days])
    with tempfile.TemporaryDirectory(prefix="sociodemo-sets-") as tmp:
        workdir = Path(tmp)
        con = duck.connect(workdir)
        con.execute(_VOCAB.format(videos=videos))
        duck.copy_to_root(con, "SELECT * FROM vocab ORDER BY video_idx", root, f"{rel_dir}/videos.parquet")
        parts = []
        for i, users in enumerate(_uid_ranges(con, events)):
            part = workdir / f"part-{i:05d}.parquet"
            con.execute(f"COPY ({_SETS.format(events=events, users=users, max_items=int(max_items))}) "
                        f"TO {duck.sql_path(part)} (FORMAT parquet, COMPRESSION zstd)")
            parts.append(part)
        con.close()
        merged = workdir / "user_sets.parquet"
        _concat_parquet(parts, merged)
        uri = root.put_file(merged, f"{rel_dir}/user_sets.parquet")
    log.info("user sets as of %s over %d day(s), %d range(s), written to %s", as_of, len(days), len(parts), uri)
    return uri


def _uid_ranges(con, events: str) -> list[str]:
    """WHERE conditions splitting the users into contiguous ranges of about EVENTS_PER_RANGE events each."""
    total = con.execute(f"SELECT count(*) FROM {events}").fetchone()[0]
    n = max(1, math.ceil(total / EVENTS_PER_RANGE))
    if n == 1:
        return ["true"]
    quantiles = [i / n for i in range(1, n)]
    bounds = sorted({int(b) for b in con.execute(
        f"SELECT approx_quantile(viewer_uid, {quantiles}) FROM {events}").fetchone()[0]})
    edges: list[int | None] = [None, *bounds, None]
    return [" AND ".join([f"viewer_uid >= {lo}"] * (lo is not None) + [f"viewer_uid < {hi}"] * (hi is not None))
            for lo, hi in itertools.pairwise(edges)]


def _concat_parquet(parts: list[Path], out: Path) -> None:
    """Stream Parquet files with one schema into one file, in order, a batch at a time."""
    import pyarrow.parquet as pq

    schema_ = pq.read_schema(parts[0])
    with pq.ParquetWriter(out, schema_, compression="zstd") as writer:
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=65_536):
                writer.write_batch(batch)

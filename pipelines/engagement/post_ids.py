"""Post ids for whole columns at once: the first 8 bytes of MD5(time, author, title), little-endian, halved.

The same id as :func:`pipelines.engagement.schema.post_id` (and so the same whatever library computes it), but
for a block of a few hundred thousand rows: a small MD5 kernel compiled with numba
(:mod:`~pipelines.engagement.md5_kernel`) reads the keys straight from the Arrow buffers, three times as fast
as DuckDB's ``md5`` over the same rows (a 32 MB block of 323,000 rows: 0.12 s of CPU against 0.36 s). Small
blocks (a day's drop), or an installation without numba, use DuckDB: the ids are the same either way (tested).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SEPARATOR = "\x1f"
#: Below this many rows DuckDB hashes (no compiled kernel to load); above, numba when it is installed.
KERNEL_MIN_ROWS = 20_000


@lru_cache(maxsize=1)
def _kernel():
    """The compiled kernel's entry point, or None when numba is not installed."""
    try:
        from pipelines.engagement.md5_kernel import key_ids
    except ImportError:
        return None
    return key_ids


def post_ids(time_created, author, title, con=None) -> np.ndarray:
    """The ids (int64) of rows given as Arrow arrays: integer times, trimmed authors and titles (no nulls)."""
    import pyarrow as pa

    kernel = _kernel() if len(time_created) >= KERNEL_MIN_ROWS else None
    if kernel is None:
        return _post_ids_duckdb(time_created, author, title, con)
    times = np.asarray(_flat(time_created, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    out = np.empty(len(times), dtype=np.int64)
    if len(times):
        kernel(times, *_string_buffers(author), *_string_buffers(title), out)
    return out


def _flat(column, kind):
    """``column`` as one Arrow array of type ``kind`` (chunks combined)."""
    import pyarrow as pa

    column = column.cast(kind) if column.type != kind else column
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _string_buffers(column) -> tuple[np.ndarray, np.ndarray]:
    """The bytes and the ``len + 1`` row offsets (64-bit, so any size) of a string column, without a copy when
    it is one array already."""
    import pyarrow as pa

    if column.null_count:
        raise ValueError("post ids need authors and titles without nulls")
    column = _flat(column, pa.large_string())
    n = len(column)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)[column.offset: column.offset + n + 1]
    data = column.buffers()[2]
    return (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)), offsets


def _post_ids_duckdb(time_created, author, title, con=None) -> np.ndarray:
    import duckdb
    import pyarrow as pa

    own = con is None
    con = duckdb.connect() if own else con
    try:
        con.register("keys", pa.table({"t": time_created, "author": author, "title": title}))
        try:
            return con.sql("SELECT CAST(md5_number_upper(CAST(t AS VARCHAR) || chr(31) || author || chr(31) || title)"
                           " >> 1 AS BIGINT) AS post_id FROM keys").to_arrow_table()["post_id"].to_numpy()
        finally:
            con.unregister("keys")
    finally:
        if own:
            con.close()

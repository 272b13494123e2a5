"""Post ids for whole columns at once: the first 8 bytes of MD5(time, author, title), little-endian, halved.

The same id as :func:`pipelines.engagement.schema.post_id` (and so the same whatever library computes it), but
for a block of a few hundred thousand rows: the keys are joined by Arrow into one buffer and hashed by a small
MD5 kernel compiled with numba (:mod:`~pipelines.engagement.md5_kernel`), about twice as fast as DuckDB's
``md5`` over the same rows (measured on a 32 MB block: 0.13 s of CPU against 0.31 s). Small blocks (a day's
drop), or an installation without numba, use DuckDB: the ids are the same either way (tested).
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
        from pipelines.engagement.md5_kernel import first8_of
    except ImportError:
        return None
    return first8_of


def post_ids(time_created, author, title, con=None) -> np.ndarray:
    """The ids (int64) of rows given as Arrow arrays: integer times, trimmed authors and titles."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kernel = _kernel() if len(time_created) >= KERNEL_MIN_ROWS else None
    if kernel is None:
        return _post_ids_duckdb(time_created, author, title, con)
    keys = pc.binary_join_element_wise(pc.cast(time_created, pa.string()), author, title, SEPARATOR)
    keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    keys = pc.cast(keys, pa.large_string())  # 64-bit offsets: any block size
    n = len(keys)
    out = np.empty(n, dtype=np.int64)
    if n:
        offsets = np.frombuffer(keys.buffers()[1], dtype=np.int64)[keys.offset: keys.offset + n + 1]
        data = np.frombuffer(keys.buffers()[2], dtype=np.uint8) if keys.buffers()[2] is not None else \
            np.zeros(0, np.uint8)
        kernel(data, offsets, out)
    return out


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

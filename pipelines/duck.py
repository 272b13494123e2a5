"""DuckDB connections for out-of-core work (memory cap, spill, UTC), SQL literals, and atomic Parquet publishing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipelines.storage import DataRoot

#: DuckDB's memory cap; past it, joins and aggregations spill to the temp directory instead of failing.
MEMORY_LIMIT = os.environ.get("PIPELINES_DUCKDB_MEMORY_LIMIT", "2GB")


def connect(workdir: Path, memory_limit: str | None = None, threads: int | None = None):
    """A connection with UTC session time, a memory cap, spill to ``workdir`` and no insertion-order cost."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET memory_limit = ?", [memory_limit or MEMORY_LIMIT])
    con.execute("SET temp_directory = ?", [str(workdir / "spill")])
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")  # task logs, not a terminal
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def sql_path(path: Path | str) -> str:
    """A path as a SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def sql_paths(paths: list[Path] | list[str]) -> str:
    """A list of paths as a SQL list literal (for ``read_parquet``)."""
    return "[" + ", ".join(sql_path(p) for p in paths) + "]"


def read_parquet(paths: list[Path] | list[str]) -> str:
    """``read_parquet`` of exact files, without Hive columns (our ``dt=``/``version=`` folders are not data)."""
    return f"read_parquet({sql_paths(paths)}, hive_partitioning = false)"


def copy_to_root(con, query: str, root: DataRoot, rel: str, options: str = "FORMAT parquet, COMPRESSION zstd") -> str:
    """Write a query's result to ``rel`` under the root atomically (temp file, then rename or one PUT)."""
    if root.is_s3:
        with tempfile.TemporaryDirectory(prefix="duck-") as tmp:
            local = Path(tmp) / Path(rel).name
            con.execute(f"COPY ({query}) TO {sql_path(local)} ({options})")
            return root.put_file(local, rel)
    dest = root.local_path(rel)
    tmp_path = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        con.execute(f"COPY ({query}) TO {sql_path(tmp_path)} ({options})")
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)
    return root.join(rel)

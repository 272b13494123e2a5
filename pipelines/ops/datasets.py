"""Seed 001's *Analyse* view for every pipeline: the first rows of a data set with their features.

The data sets a pipeline has are what its runs recorded: every accepted partition's staged files (the valid
rows, as the pipeline's later steps read them) and the outputs of its transform runs (e.g. the socio-demographic
feature table as of a day). They are named by id (``partition:<key>`` or ``run:<registry run id>``) and resolved
here, on the server, to folders of the data root: a request never names a path. Only the first rows are read
(Parquet row groups, at most :data:`MAX_ROWS`), so a preview is quick whatever the data set's size.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pipelines import db
from pipelines.ops.queries import existing_tables
from pipelines.ops.report import relative_to_root
from pipelines.storage import DataRoot

MAX_ROWS = 1000
MAX_CELL = 300
_PARTITION_ID = re.compile(r"^partition:[A-Za-z0-9_.:=-]{1,100}$")


@dataclass
class Dataset:
    id: str
    label: str
    kind: str  # "partition" (staged valid rows of an accepted partition) or "transform" (a run's output)
    folder: str  # data-root relative
    file: str | None = None  # a single file output (a transform's Parquet)
    run_id: str | None = None
    rows: int | None = None


def list_datasets(cur, pipeline: str, root: DataRoot, limit: int = 60) -> list[Dataset]:
    """The pipeline's data sets, newest first: accepted partitions, then transform outputs."""
    out: list[Dataset] = []
    if "ingest_partitions" in existing_tables(cur, ["ingest_partitions"]):
        for r in db.fetch_dicts(cur, """
                SELECT partition_key, run_id::text AS run_id, staged_uri, rows_valid FROM ingest_partitions
                WHERE pipeline = %s AND status = 'accepted' AND staged_uri IS NOT NULL
                ORDER BY updated_at DESC LIMIT %s""", (pipeline, limit)):
            folder = relative_to_root(r["staged_uri"], root)
            if folder:
                out.append(Dataset(id=f"partition:{r['partition_key']}", kind="partition", folder=folder,
                                   label=f"{r['partition_key']}: staged valid rows", run_id=r["run_id"],
                                   rows=r["rows_valid"]))
    for r in db.fetch_dicts(cur, """
            SELECT run_id::text AS run_id, artifact_uri, started_at, params FROM runs
            WHERE pipeline = %s AND kind = 'transform' AND status = 'success' AND artifact_uri IS NOT NULL
            ORDER BY started_at DESC LIMIT %s""", (pipeline, 20)):
        rel = relative_to_root(r["artifact_uri"], root)
        if not rel:
            continue
        is_file = rel.lower().endswith(".parquet")
        day = (r["params"] or {}).get("day") or (r["params"] or {}).get("as_of") or f"{r['started_at']:%Y-%m-%d}"
        out.append(Dataset(id=f"run:{r['run_id']}", kind="transform", run_id=r["run_id"],
                           folder=str(PurePosixPath(rel).parent) if is_file else rel,
                           file=PurePosixPath(rel).name if is_file else None,
                           label=f"{PurePosixPath(rel).name} as of {day} "
                                 f"(transform run {r['run_id'][:8]})"))
    # several transform runs may rebuild the same output: keep the newest of each
    seen: set[tuple[str, str | None]] = set()
    unique = []
    for d in out:
        if (d.folder, d.file) not in seen:
            seen.add((d.folder, d.file))
            unique.append(d)
    return unique


def valid_id(dataset_id: str) -> bool:
    if _PARTITION_ID.match(dataset_id):
        return True
    if dataset_id.startswith("run:"):
        try:
            uuid.UUID(dataset_id[4:])
            return True
        except ValueError:
            return False
    return False


def files_of(dataset: Dataset, root: DataRoot) -> list[str]:
    """The previewable (Parquet) files of a data set, by name; the quarantine is not a data set."""
    if dataset.file:
        return [dataset.file]
    names = [PurePosixPath(r).name for r in root.list(dataset.folder)]
    return [n for n in names if n.lower().endswith(".parquet") and not n.startswith("quarantine")]


def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value[:MAX_CELL].hex()
    if isinstance(value, list | dict):
        value = json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, str) and len(value) > MAX_CELL:
        return value[:MAX_CELL] + "…"
    return value


def preview(dataset: Dataset, name: str, root: DataRoot, rows: int = 50) -> dict[str, Any]:
    """The first ``rows`` rows (at most :data:`MAX_ROWS`) of one Parquet file of the data set, with its schema
    and its total row count (from the Parquet footer: nothing else is read)."""
    import pyarrow.parquet as pq

    if name not in files_of(dataset, root):
        raise LookupError(f"{name!r} is not a file of {dataset.id}")
    rows = max(1, min(int(rows), MAX_ROWS))
    path = root.local_dir(dataset.folder) / name
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    batch = next(parquet.iter_batches(batch_size=rows), None)
    records = batch.to_pylist()[:rows] if batch is not None else []
    return {"columns": [(f.name, str(f.type)) for f in schema], "total": parquet.metadata.num_rows,
            "rows": [[_cell(r.get(f.name)) for f in schema] for r in records]}

"""The streamed linear model's memory does not grow with the number of batches it reads.

The same authors and the same model size, eight times more data (eight times more batches): the peak of
Python- and NumPy-allocated memory while fitting (``tracemalloc``) must stay the same, within a margin.
Peak RSS on files of 2, 10 and 20 GB is measured by ``bench/engagement_bench.py``; this is the small, exact
version of the same claim.
"""

from __future__ import annotations

import gc
import tracemalloc
from datetime import date

import pyarrow.parquet as pq

from pipelines import ingest
from pipelines.engagement import convert, dataset, schema
from pipelines.engagement.generate import EngagementSpec, write_history
from pipelines.engagement.models.base import TrainContext
from pipelines.engagement.models.linear import StreamingLinear


def _context(tmp_path, days: int) -> TrainContext:
    spec = EngagementSpec(seed=4, start=date(2020, 1, 1), days=days, posts_per_day=400, n_authors=300,
                          growth_per_year=0.0)
    write_history(spec, tmp_path, "h.csv", spec.start, spec.end, truth=False)
    ws = ingest.Workspace(tmp_path / "ws")
    convert.preview(tmp_path / schema.HISTORY_DIR / "h.csv", workspace=ws)
    files = [dataset.MonthFile(schema.month_of_file(p.name), p, "file=h.csv", pq.ParquetFile(p).metadata.num_rows)
             for p in sorted(ws.local.glob("posts-*.parquet"))]
    months = sorted({f.month for f in files})
    split = dataset.TimeSplit(tuple(months[:-1]), (months[-1],), (months[-1],), spec.end)
    prepared = dataset.prepare(files, split, tmp_path / "prepared")
    stats, target = dataset.author_stats(prepared.of(split.train), split.end)
    valid = dataset.sample(prepared.of(split.valid), split.end, 500, 1, "valid")
    return TrainContext(prepared=prepared, stats=stats, target=target, valid=valid, workdir=tmp_path)


def _peak_while_fitting(ctx: TrainContext) -> tuple[int, int]:
    model = StreamingLinear(bits=16, epochs=1, batch_rows=1024, shuffle_batches=4, curve_points=4)
    gc.collect()
    tracemalloc.start()
    try:
        info = model.fit(ctx)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, info["batches"]


def test_memory_does_not_grow_with_the_number_of_batches(tmp_path):
    small = _context(tmp_path / "small", days=45)  # trains on January: about 12 batches
    large = _context(tmp_path / "large", days=305)  # trains on January to September: about 9x the batches
    _peak_while_fitting(small)  # warm caches (token hashes, imports) before measuring
    peak_small, batches_small = _peak_while_fitting(small)
    peak_large, batches_large = _peak_while_fitting(large)
    assert batches_large >= 7 * batches_small
    assert peak_large < 1.2 * peak_small + 2 * 2**20, (peak_small, peak_large)

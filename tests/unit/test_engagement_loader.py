"""The iterable Parquet dataset behind the neural model: with any number of DataLoader workers, every post of
an epoch comes exactly once (the seed's map-style loader duplicated data across workers); epochs reshuffle;
the batch sequence is reproducible."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pyarrow.parquet as pq
import pytest

from pipelines import ingest
from pipelines.engagement import convert, dataset, schema
from pipelines.engagement.generate import EngagementSpec, write_history

torch = pytest.importorskip("torch")

from pipelines.engagement.models.loader import ParquetShards, loader  # noqa: E402


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    root = tmp_path_factory.mktemp("engagement-loader")
    spec = EngagementSpec(seed=2, start=date(2021, 1, 1), days=70, posts_per_day=100, n_authors=300)
    write_history(spec, root, "h.csv", spec.start, spec.end, truth=False)
    ws = ingest.Workspace(root / "ws")
    convert.preview(root / schema.HISTORY_DIR / "h.csv", workspace=ws,
                    options=convert.ConvertOptions(row_group_rows=500))
    paths = sorted(ws.local.glob("posts-*.parquet"))
    expected = set()
    for path in paths:
        expected |= set(pq.read_table(path, columns=["post_id"])["post_id"].to_pylist())
    return dataset.row_groups(paths), expected


def _epoch(shards: ParquetShards, workers: int) -> list[int]:
    return [pid for batch in loader(shards, workers) for pid in batch["post_id"].tolist()]


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_every_post_exactly_once_whatever_the_workers(units, workers):
    groups, expected = units
    assert len(groups) >= 12
    shards = ParquetShards(groups, end=None, batch_rows=128, buckets=1 << 12, author_buckets=1 << 8, seed=5)
    seen = _epoch(shards, workers)
    assert Counter(seen).most_common(1)[0][1] == 1
    assert set(seen) == expected


def test_workers_get_disjoint_units_covering_all():
    shards = ParquetShards([("f", i) for i in range(17)], None, 10, 8, 8, seed=1)
    for workers in range(1, 6):
        parts = [shards.assigned(w, workers) for w in range(workers)]
        flat = [u for p in parts for u in p]
        assert sorted(flat) == list(range(17)) and len(flat) == len(set(flat))


def test_epochs_reshuffle_and_runs_repeat(units):
    groups, _ = units
    shards = ParquetShards(groups, end=None, batch_rows=128, buckets=1 << 12, author_buckets=1 << 8, seed=5)
    first = _epoch(shards, 2)
    assert _epoch(shards, 2) == first  # same epoch, same seed: the same sequence
    shards.epoch = 1
    second = _epoch(shards, 2)
    assert second != first and sorted(second) == sorted(first)


def test_batches_carry_what_the_model_needs(units):
    groups, _ = units
    shards = ParquetShards(groups[:1], end=None, batch_rows=64, buckets=1 << 12, author_buckets=1 << 8)
    batch = next(iter(loader(shards, 0)))
    n = len(batch["y"])
    assert n == 64 and batch["offsets"].shape == (n,) and batch["dense"].shape == (n, 3)
    assert int(batch["ids"].max()) < 1 << 12 and int(batch["author"].max()) < 1 << 8
    assert batch["hour"].max() < 24 and batch["weekday"].max() < 7

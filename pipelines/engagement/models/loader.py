"""A PyTorch iterable dataset over Parquet row groups, split across DataLoader workers without duplicates.

The seed's map-style loader held an index over the whole CSV and its workers read overlapping data. Here the
unit of work is a Parquet **row group**: every epoch, the list of (file, row group) units is shuffled with a
seed that depends only on ``(seed, epoch)`` (so every worker computes the same order) and worker ``w`` of ``W``
takes units ``w, w + W, w + 2W, ...``. The units are disjoint and together cover every row exactly once,
whatever the number of workers; within a unit, rows are shuffled (seeded by epoch and unit) and cut into
batches that the worker featurises itself (tokenising and hashing is the CPU work the workers exist for).
Memory per worker: one row group. With the DataLoader's in-order delivery the batch sequence is a function of
the data, the seed and the worker count: training is reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.engagement import dataset
from pipelines.engagement import features as F


def featurize(table, buckets: int, author_buckets: int) -> dict:
    """Tensors of a batch: title n-gram buckets (flat + offsets), author bucket, hour, weekday, dense features
    (over_18, title length, years), the target and the post ids."""
    import torch

    tokens = F.title_tokens(table["title"])
    t = F.time_features(table["time_created"].to_numpy())
    over = np.asarray(table["over_18"].to_numpy(zero_copy_only=False), dtype=np.float32)
    dense = np.column_stack([over, np.log1p(tokens.n_words) / 3.0, (t["years"] - 12.0) / 5.0]).astype(np.float32)
    return {
        "ids": torch.from_numpy(tokens.buckets(buckets)),
        "offsets": torch.from_numpy(tokens.offsets[:-1].astype(np.int64)),
        "author": torch.from_numpy(F.hashed_strings(table["author"], author_buckets)),
        "hour": torch.from_numpy(t["hour"].astype(np.int64)),
        "weekday": torch.from_numpy(t["weekday"].astype(np.int64)),
        "dense": torch.from_numpy(dense),
        "y": torch.from_numpy(F.target(table["up_votes"].to_numpy()).astype(np.float32)),
        "post_id": torch.from_numpy(table["post_id"].to_numpy().astype(np.int64)),
    }


def _iterable_base():
    import torch

    return torch.utils.data.IterableDataset


class ParquetShards(_iterable_base()):
    """Batches of featurised posts from (file, row group) units, each unit read by exactly one worker."""

    def __init__(self, units: list[tuple[Path, int]], end: int | None, batch_rows: int, buckets: int,
                 author_buckets: int, seed: int = 42, shuffle: bool = True) -> None:
        super().__init__()
        self.units, self.end, self.batch_rows = list(units), end, int(batch_rows)
        self.buckets, self.author_buckets = int(buckets), int(author_buckets)
        self.seed, self.shuffle = int(seed), shuffle
        self.epoch = 0

    def order(self) -> list[int]:
        """Every unit's index, in this epoch's order (the same in every worker)."""
        idx = np.arange(len(self.units))
        if self.shuffle:
            idx = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.units))
        return idx.tolist()

    @staticmethod
    def worker() -> tuple[int, int]:
        import torch

        info = torch.utils.data.get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def assigned(self, worker: int, workers: int) -> list[int]:
        """The units worker ``worker`` of ``workers`` reads this epoch: disjoint, and all of them together."""
        return self.order()[worker::workers]

    def __iter__(self):
        worker, workers = self.worker()
        for unit in self.assigned(worker, workers):
            path, group = self.units[unit]
            table = dataset.read_row_group(Path(path), group, self.end)
            if table.num_rows == 0:
                continue
            if self.shuffle:
                rows = np.random.default_rng([self.seed, self.epoch, unit]).permutation(table.num_rows)
                table = table.take(rows)
            for lo in range(0, table.num_rows, self.batch_rows):
                yield featurize(table.slice(lo, self.batch_rows), self.buckets, self.author_buckets)


def loader(shards: ParquetShards, workers: int):
    """A DataLoader over the shards: batches come already made (``batch_size=None``), in order."""
    import multiprocessing

    import torch

    kwargs = {}
    if workers > 0 and "fork" in multiprocessing.get_all_start_methods():
        kwargs["multiprocessing_context"] = "fork"  # workers inherit the imported modules: no re-import cost
    return torch.utils.data.DataLoader(shards, batch_size=None, num_workers=int(workers), **kwargs)

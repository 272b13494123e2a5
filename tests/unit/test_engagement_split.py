"""The time split never leaks: training reads only months before validation and test, nothing after the as-of
day, the author statistics come from training rows only, samples come from their own months; a post held by
two partitions is read once; samples are bounded and do not depend on file order."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines import ingest
from pipelines.engagement import convert, dataset, schema
from pipelines.engagement.generate import EngagementSpec, write_day, write_history
from pipelines.errors import MissingPartitionError

SPEC = EngagementSpec(seed=9, start=date(2019, 1, 1), days=151, posts_per_day=120, n_authors=800)
AS_OF = date(2019, 5, 20)  # mid-May: May is a partial test month, the last days must never be read


def _month_files(folder: Path, partition: str) -> list[dataset.MonthFile]:
    return [dataset.MonthFile(schema.month_of_file(p.name), p, partition, pq.ParquetFile(p).metadata.num_rows)
            for p in sorted(folder.glob("posts-*.parquet"))]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[dataset.MonthFile]:
    """The history (Jan - May) as one partition, and 2019-03-10 again as a daily partition (its posts twice)."""
    root = tmp_path_factory.mktemp("engagement-split")
    write_history(SPEC, root, "h.csv", SPEC.start, SPEC.end, truth=False)
    history = ingest.Workspace(root / "ws-history")
    convert.preview(root / schema.HISTORY_DIR / "h.csv", workspace=history)
    day = date(2019, 3, 10)
    write_day(SPEC, root, day, truth=False)
    drop = ingest.Workspace(root / "ws-day")
    ingest.inspect(schema.PIPELINE, day.isoformat(),
                   convert.local_file_validator(root / schema.raw_day_dir(day) / "posts.csv", day=day),
                   max_bad_share=0.05, benign_reasons=schema.BENIGN_REASONS, workspace=drop)
    return _month_files(history.local, "file=h.csv") + _month_files(drop.local, "2019-03-10")


def _rows(paths, end=None) -> pd.DataFrame:
    frames = [b.to_pandas() for b in dataset.iter_batches(paths, end, 4096)]
    return pd.concat(frames, ignore_index=True)


def test_months_split_in_time_order(files):
    split = dataset.time_split({f.month for f in files}, AS_OF, valid_months=1, test_months=1)
    assert (split.train, split.valid, split.test) == (("2019-01", "2019-02", "2019-03"), ("2019-04",), ("2019-05",))
    assert split.end == int(datetime(2019, 5, 21, tzinfo=UTC).timestamp())
    assert dataset.time_split({f.month for f in files}, AS_OF, train_months=2).train == ("2019-02", "2019-03")
    with pytest.raises(MissingPartitionError, match="needs at least 4"):
        dataset.time_split({f.month for f in files}, date(2019, 3, 1), valid_months=2, test_months=1)


def test_training_never_reads_validation_test_or_future_rows(files, tmp_path):
    split = dataset.time_split({f.month for f in files}, AS_OF)
    prepared = dataset.prepare(files, split, tmp_path)
    train = _rows(prepared.of(split.train), split.end)
    valid = _rows(prepared.of(split.valid), split.end)
    test = _rows(prepared.of(split.test), split.end)
    assert train.time_created.max() < valid.time_created.min() <= valid.time_created.max() < test.time_created.min()
    assert test.time_created.max() < split.end
    everything = _rows([f.path for f in files])
    assert (everything.time_created >= split.end).sum() > 1000  # there were later rows, and none was read
    stats, target = dataset.author_stats(prepared.of(split.train), split.end)
    y = np.log1p(train.up_votes)
    assert target["rows"] == len(train) and target["mean"] == pytest.approx(y.mean())
    by_author = y.groupby(train.author).agg(["count", "sum"])
    assert stats.authors.tolist() == sorted(by_author.index)
    assert np.allclose(stats.n, by_author["count"].reindex(stats.authors).to_numpy())
    assert np.allclose(stats.s, by_author["sum"].reindex(stats.authors).to_numpy())
    sample = dataset.sample(prepared.of(split.test), split.end, 500, 42, "test").to_pandas()
    assert len(sample) == 500 and sample.time_created.min() >= test.time_created.min()
    assert sample.time_created.max() < split.end


def test_a_post_in_two_partitions_is_read_once(files, tmp_path):
    split = dataset.time_split({f.month for f in files}, AS_OF)
    march = [f for f in files if f.month == "2019-03"]
    assert len({f.partition for f in march}) == 2
    raw = _rows([f.path for f in march])
    prepared = dataset.prepare(files, split, tmp_path)
    once = _rows(prepared.files["2019-03"])
    day_rows = sum(f.rows for f in march if f.partition == "2019-03-10")
    assert len(raw) - len(once) == day_rows > 50
    assert once.post_id.is_unique and set(once.post_id) == set(raw.post_id)
    assert prepared.files["2019-01"] == [f.path for f in files if f.month == "2019-01"]  # read in place
    days_only = [dataset.MonthFile(f.month, f.path, f"2019-03-{10 + i}", f.rows) for i, f in enumerate(march)]
    in_place = dataset.prepare(days_only, dataset.TimeSplit(("2019-03",), (), (), AS_OF), tmp_path / "days")
    assert in_place.files["2019-03"] == [f.path for f in days_only]  # days cannot share a post: no rewrite


def test_samples_are_bounded_deterministic_and_order_free(files):
    paths = [f.path for f in files if f.partition == "file=h.csv"]
    a = dataset.sample(paths, None, 300, 7, "train")
    b = dataset.sample(list(reversed(paths)), None, 300, 7, "train")
    c = dataset.sample(paths, None, 300, 8, "train")
    assert a.num_rows == 300 and a.equals(b)
    assert set(a["post_id"].to_pylist()) != set(c["post_id"].to_pylist())
    months = {datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m") for t in a["time_created"].to_pylist()}
    assert len(months) == 5  # uniform over the months, not the first rows of the first file


def test_batches_stop_at_the_as_of_day(files):
    may = [f.path for f in files if f.month == "2019-05"]
    end = int(datetime.combine(AS_OF + timedelta(days=1), datetime.min.time(), tzinfo=UTC).timestamp())
    rows = _rows(may, end)
    assert rows.time_created.max() < end <= _rows(may).time_created.max()

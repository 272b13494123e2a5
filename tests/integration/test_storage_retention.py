"""The storage retention policy: what each pipeline prunes, what it must keep, and that a pruned partition gives
a clear error and can be ingested again."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipelines import db, ingest
from pipelines.errors import MissingPartitionError
from pipelines.retention import jobs as retention
from pipelines.retention.generate import RetentionDataSpec, write_days
from pipelines.settings import get_settings

pytestmark = pytest.mark.integration


def _runs_on_disk(root, pipeline: str) -> dict[str, list[str]]:
    staged = root / pipeline / "staged"
    return {p.name: sorted(r.name for r in p.iterdir()) for p in sorted(staged.iterdir())} if staged.exists() else {}


def test_retention_keeps_recent_staging_and_drops_loaded_old_days(pg_dsn, data_root, monkeypatch):
    monkeypatch.setenv("PIPELINES_KEEP_STAGED_DAYS", "2")
    get_settings.cache_clear()
    spec = RetentionDataSpec(start=date(2017, 4, 1), days=5, installs_per_day=20, existing_users=50, seed=3)
    write_days(spec, data_root)
    first = spec.start
    retention.run_day(first)
    retention.run_day(first)  # a second attempt of the first day: superseded
    for day in spec.dates()[1:]:
        retention.run_day(day)
    on_disk = _runs_on_disk(data_root, "retention")
    cutoff = spec.dates()[-1] - timedelta(days=2)
    for day in spec.dates():
        expected = 0 if day < cutoff else 1
        assert len(on_disk.get(f"dt={day}", [])) == expected, (day, on_disk)
    old = ingest.partition_status("retention", first.isoformat())
    assert old["status"] == "accepted" and old["staged_uri"] is None and old["extra"]["pruned_at"]
    with pytest.raises(MissingPartitionError, match=r"removed by the retention policy .* ingest the raw input"):
        retention.load(first)
    retention.run_day(first)  # the raw drop is still there: the day is ingested and loaded again
    assert db.query("SELECT count(*) AS n FROM retention_day_loads WHERE status = 'loaded'")[0]["n"] == 5


def test_sociodemo_prunes_old_state_and_unpromoted_models(pg_dsn, data_root):
    from pipelines.migrate import upgrade
    from pipelines.sociodemo import housekeeping

    upgrade()
    root_rel = data_root / "sociodemo"
    for day in range(1, 11):
        d = date(2024, 6, day)
        for rel in (f"state/cumulative/version=abc/dt={d}", f"state/daily/version=abc/dt={d}",
                    f"features/as_of={d}/version=h", f"user_sets/as_of={d}/window=all/max_items=8"):
            (root_rel / rel).mkdir(parents=True)
            (root_rel / rel / "part.parquet").write_bytes(b"x")
    result = housekeeping.prune_history(date(2024, 6, 10), keep_days=3)
    assert result["cutoff"] == "2024-06-07"
    left = sorted(p.name for p in (root_rel / "state/cumulative/version=abc").iterdir())
    assert left == [f"dt=2024-06-{d:02d}" for d in range(7, 11)]
    assert len(list((root_rel / "state/daily/version=abc").iterdir())) == 10  # per-day partials are kept
    assert sorted(p.name for p in (root_rel / "features").iterdir())[0] == "as_of=2024-06-07"
    for version in ("20240601-a", "20240602-b", "20240603-c", "20240604-d"):
        (root_rel / "models" / version).mkdir(parents=True)
    with db.transaction() as cur:
        cur.execute("""INSERT INTO runs (run_id, pipeline, kind, model_name, model_version, status)
                       VALUES ('00000000-0000-0000-0000-000000000001', 'sociodemo', 'train', 'catboost',
                               '20240601-a', 'success')""")
        cur.execute("""INSERT INTO model_promotions (pipeline, model_name, alias, run_id)
                       VALUES ('sociodemo', 'catboost', 'production', '00000000-0000-0000-0000-000000000001')""")
    pruned = housekeeping.prune_models(keep=2)
    assert pruned["removed"] == ["20240602-b"]
    assert sorted(p.name for p in (root_rel / "models").iterdir()) == ["20240601-a", "20240603-c", "20240604-d"]

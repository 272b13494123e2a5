"""Storage retention for the socio-demographic pipeline (the policy in ``docs/platform.md``).

What grows every day, and what is kept:

* the all-time ``cumulative`` state (about 90 MB a day at 1M users): the last ``PIPELINES_KEEP_STATE_DAYS``
  days (a rerun or backfill of an older day rebuilds it from the per-day partials: slower, same result);
* feature tables and user sets ``as_of`` a day: the same number of days;
* staged event runs: each day's accepted run (a full rebuild reads every accepted day) and its newest other
  attempt; the per-day ``daily`` and ``pairs`` partials are kept (small, and every later day folds over them);
* trained model versions: every promoted one, and the newest ``PIPELINES_KEEP_MODEL_VERSIONS``.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from pipelines import db, ingest
from pipelines.settings import get_settings
from pipelines.sociodemo import schema
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)


def _older(name: str, prefix: str, cutoff: date) -> bool:
    return name.startswith(prefix) and name[len(prefix):len(prefix) + 10] < cutoff.isoformat()


def prune_history(as_of: date, root: DataRoot | None = None, keep_days: int | None = None) -> dict:
    """Remove cumulative state, feature tables and user sets older than ``keep_days`` before ``as_of``."""
    root = root or DataRoot()
    keep_days = get_settings().keep_state_days if keep_days is None else keep_days
    cutoff = as_of - timedelta(days=keep_days)
    removed: list[str] = []
    for version in root.list_dirs("sociodemo/state/cumulative"):
        for part in root.list_dirs(f"sociodemo/state/cumulative/{version}"):
            if _older(part, "dt=", cutoff):
                removed.append(f"sociodemo/state/cumulative/{version}/{part}")
    for kind in ("features", "user_sets"):
        removed += [f"sociodemo/{kind}/{d}" for d in root.list_dirs(f"sociodemo/{kind}") if _older(d, "as_of=", cutoff)]
    for rel in removed:
        root.remove_dir(rel)
    removed += ingest.prune_staging(schema.PIPELINE, keep_attempts=1, root=root)["removed"]
    if removed:
        log.info("sociodemo retention: removed %d folders older than %s", len(removed), cutoff)
    return {"cutoff": cutoff.isoformat(), "removed": removed}


def prune_models(root: DataRoot | None = None, keep: int | None = None) -> dict:
    """Remove model versions that are neither promoted nor among the newest ``keep``."""
    root = root or DataRoot()
    keep = get_settings().keep_model_versions if keep is None else keep
    promoted = {r["model_version"] for r in db.query(
        "SELECT r.model_version FROM model_promotions p JOIN runs r USING (run_id) WHERE p.pipeline = %s",
        (schema.PIPELINE,))}
    versions = sorted(root.list_dirs("sociodemo/models"), reverse=True)  # YYYYMMDD-hash: newest first
    doomed = [v for v in versions[keep:] if v not in promoted]
    for version in doomed:
        root.remove_dir(f"sociodemo/models/{version}")
    if doomed:
        log.info("sociodemo retention: removed model versions %s (kept %s and the promoted %s)", doomed,
                 versions[:keep], sorted(promoted))
    return {"removed": doomed, "promoted": sorted(promoted)}

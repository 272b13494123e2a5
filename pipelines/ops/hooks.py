"""The platform's calls into operations, from shared code (``ingest.run_ingest``, ``registry.track_run``).

Each is one line in the shared module and never fails the work it watches: an alert that cannot be checked is
logged, and the ingest or training it is about carries on as it would without operations.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def after_ingest(result: Any, max_bad_share: float, share: float | None = None, dsn: str | None = None) -> None:
    """After an ingest's commit: warn when the accepted partition's bad share passed its warning level."""
    try:
        from pipelines.ops.alerts import check_quarantine_share

        check_quarantine_share(result, max_bad_share, share, dsn)
    except Exception:
        log.exception("operations: the quarantine-share check of %s %s failed (the ingest is not affected)",
                      getattr(result, "pipeline", "?"), getattr(result, "partition", "?"))


def after_run(run_id: str, kind: str, status: str, dsn: str | None = None) -> None:
    """When a registry run closes: a successful train/evaluate run is checked against the promoted version."""
    if status != "success" or kind not in ("train", "evaluate"):
        return
    try:
        from pipelines.ops.alerts import check_metric_drop

        check_metric_drop(str(run_id), dsn)
    except Exception:
        log.exception("operations: the metric check of run %s failed (the run is not affected)", run_id)

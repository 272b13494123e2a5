"""The operations settings, from the environment (each documented in the README's operations section).

=====================================================  ==============================================  =======
variable                                               what                                            default
=====================================================  ==============================================  =======
``PIPELINES_OPS_QUARANTINE_WARN_RATIO``                warn when an accepted partition's bad share     0.5
                                                       passes this fraction of its ``max_bad_share``
``PIPELINES_OPS_METRIC_TOLERANCE``                     alert when a model's primary metric is worse    0.05
                                                       than the promoted version's by more than this
                                                       share of it (``..._<PIPELINE>`` per pipeline)
``PIPELINES_ALERT_WEBHOOK_URL``                        where alerts are POSTed (else the Airflow
                                                       connection ``pipelines_alerts_webhook``)
``PIPELINES_ALERT_EMAIL_TO``                           comma-separated recipients (else the ``to`` extra
                                                       of the SMTP connection)
``PIPELINES_ALERT_SMTP_URL``                           ``smtp://user:pass@host:port?from=..&starttls=1``
                                                       (else the connection ``pipelines_alerts_smtp``)
``PIPELINES_OPS_BASE_URL``                             the Airflow UI's address in alert messages      [api]
                                                                                                       base_url
=====================================================  ==============================================  =======
"""

from __future__ import annotations

import os

WEBHOOK_CONN_ID = "pipelines_alerts_webhook"
SMTP_CONN_ID = "pipelines_alerts_smtp"
#: The page's address under the Airflow API server (the plugin's ``url_prefix``).
URL_PREFIX = "/pipelines-ops"


def _float(name: str, default: float, low: float = 0.0, high: float = 1e9) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is outside [{low}, {high}]")
    return value


def quarantine_warn_ratio() -> float:
    """The warning level as a fraction of the rejection threshold (0.5: warn at half of ``max_bad_share``)."""
    return _float("PIPELINES_OPS_QUARANTINE_WARN_RATIO", 0.5, 0.0, 1.0)


def metric_tolerance(pipeline: str) -> float:
    """How much worse than the promoted version (relative) a new version may be before an alert."""
    return _float(f"PIPELINES_OPS_METRIC_TOLERANCE_{pipeline.upper()}",
                  _float("PIPELINES_OPS_METRIC_TOLERANCE", 0.05, 0.0, 1e6), 0.0, 1e6)


def airflow_base_url() -> str:
    """The Airflow UI's address for links in alert messages: ``PIPELINES_OPS_BASE_URL``, else ``[api] base_url``."""
    explicit = os.environ.get("PIPELINES_OPS_BASE_URL")
    if explicit:
        return explicit.rstrip("/")
    try:
        from airflow.configuration import conf

        return (conf.get("api", "base_url", fallback=None) or "http://localhost:8080").rstrip("/")
    except Exception:  # Airflow not importable or not configured: the development default
        return os.environ.get("AIRFLOW__API__BASE_URL", "http://localhost:8080").rstrip("/")

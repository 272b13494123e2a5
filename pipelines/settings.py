"""One place that says where every service and artifact lives.

Resolution order for each service is the same everywhere (CLI, Airflow task, tests, demo):

1. an explicit environment variable (``PIPELINES_PG_DSN``, ``PIPELINES_DYNAMODB_ENDPOINT``, ...);
2. an Airflow connection (``pipelines_postgres``, ``pipelines_aws``), looked up through Airflow's secrets
   backends when running inside a task, or read from its ``AIRFLOW_CONN_*`` variable otherwise;
3. only in **development mode** (``PIPELINES_LOCAL_SERVICES=1``, switched on by ``make demo``, ``make airflow``,
   ``make test`` and the command line run by hand): a local stand-in, an embedded PostgreSQL started on demand
   (``pgserver``) and the loopback moto server for DynamoDB (see :mod:`pipelines.services`).

Outside development mode a missing connection is a :class:`ConfigError`, and a connection lookup that fails
for any reason but "not defined" (an unreachable API server, a broken secrets backend) is one too: a task never
writes to a throwaway database because production was misconfigured.

Nothing here connects to anything; it only says where things are.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

PG_CONN_ID = "pipelines_postgres"
AWS_CONN_ID = "pipelines_aws"

#: All calendar-day logic (partitions, cohorts, windows) is done in this zone. Tracker timestamps carrying an
#: offset are converted to it; naive timestamps are taken to be in it already.
TIMEZONE = "UTC"

_REPO_ROOT = Path(__file__).resolve().parents[1]


class ConfigError(RuntimeError):
    """A service the job needs is not configured."""


@dataclass(frozen=True)
class Settings:
    """Where things live. Built from the environment by :func:`get_settings`."""

    home: Path
    data_root: str
    pg_dsn: str | None
    dynamodb_endpoint: str | None
    aws_region: str
    max_bad_share: float
    #: Storage retention (``docs/platform.md``): staged input runs, per-day feature state and model versions
    #: older than these are pruned by the pipelines' own steps.
    keep_staged_days: int = 30
    keep_state_days: int = 7
    keep_model_versions: int = 5

    @property
    def embedded_pgdata(self) -> Path:
        return self.home / "pgdata"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment (cached; tests call ``get_settings.cache_clear()``)."""
    home = Path(_env("PIPELINES_HOME") or _REPO_ROOT / "var").resolve()
    return Settings(
        home=home,
        data_root=_env("PIPELINES_DATA_ROOT") or str(home / "data"),
        pg_dsn=_env("PIPELINES_PG_DSN"),
        dynamodb_endpoint=_env("PIPELINES_DYNAMODB_ENDPOINT"),
        aws_region=_env("PIPELINES_AWS_REGION") or _env("AWS_DEFAULT_REGION") or "eu-west-1",
        max_bad_share=float(_env("PIPELINES_MAX_BAD_SHARE") or 0.05),
        keep_staged_days=int(_env("PIPELINES_KEEP_STAGED_DAYS") or 30),
        keep_state_days=int(_env("PIPELINES_KEEP_STATE_DAYS") or 7),
        keep_model_versions=int(_env("PIPELINES_KEEP_MODEL_VERSIONS") or 5),
    )


# --------------------------------------------------------------------------------------- Airflow connections
def _in_airflow_task() -> bool:
    return "airflow.sdk.execution_time.task_runner" in sys.modules


def local_services_enabled() -> bool:
    """Development mode: local stand-ins may be started for services nobody configured."""
    return (_env("PIPELINES_LOCAL_SERVICES") or "").lower() in ("1", "true", "yes")


def airflow_connection(conn_id: str) -> dict | None:
    """The connection ``conn_id`` as a dict (uri, extra), or None when Airflow does not define it.

    Inside a task, "not defined" falls through to the environment; any other failure of the lookup raises
    :class:`ConfigError` (it must never look like "not configured, use the local stand-in").
    """
    if _in_airflow_task():
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = Connection.get(conn_id)
        except AirflowNotFoundException:
            conn = None
        except Exception as exc:
            raise ConfigError(f"looking up the Airflow connection {conn_id!r} failed: {type(exc).__name__}: "
                              f"{exc}") from exc
        if conn is not None:
            return {"uri": conn.get_uri(), "extra": conn.extra_dejson, "login": conn.login,
                    "password": conn.password}
    raw = _env(f"AIRFLOW_CONN_{conn_id.upper()}")
    if raw is None:
        return None
    if raw.lstrip().startswith("{"):  # Airflow's JSON connection format
        data = json.loads(raw)
        extra = data.get("extra") or {}
        extra = json.loads(extra) if isinstance(extra, str) else extra
        return {"uri": None, "extra": extra, "login": data.get("login"), "password": data.get("password"),
                "json": data}
    parts = urlsplit(raw)
    extra = {k: v for k, v in parse_qsl(parts.query)}
    return {"uri": raw, "extra": extra, "login": parts.username, "password": parts.password}


def _postgres_uri_from_conn(conn: dict) -> str:
    if conn.get("uri"):
        uri = conn["uri"]
        scheme, _, rest = uri.partition("://")
        scheme = "postgresql" if scheme in ("postgres", "postgresql") else scheme
        return f"{scheme}://{rest}"
    data = conn["json"]
    auth = f"{data.get('login') or ''}:{data.get('password') or ''}@" if data.get("login") else ""
    port = f":{data['port']}" if data.get("port") else ""
    return f"postgresql://{auth}{data.get('host') or 'localhost'}{port}/{data.get('schema') or 'postgres'}"


def configured_pg_dsn() -> str | None:
    """The PostgreSQL DSN given by the environment or an Airflow connection, or None."""
    settings = get_settings()
    if settings.pg_dsn:
        return settings.pg_dsn
    conn = airflow_connection(PG_CONN_ID)
    return _postgres_uri_from_conn(conn) if conn else None


def pg_dsn() -> str:
    """The DSN to use; in development mode, the embedded PostgreSQL when nothing else is configured."""
    dsn = configured_pg_dsn()
    if dsn:
        return dsn
    if not local_services_enabled():
        raise ConfigError(
            f"PostgreSQL is not configured: set PIPELINES_PG_DSN or define the Airflow connection {PG_CONN_ID!r} "
            "(for the embedded development server, set PIPELINES_LOCAL_SERVICES=1)")
    from pipelines.services import ensure_embedded_postgres

    return ensure_embedded_postgres()


def dynamodb_config() -> dict:
    """boto3 client kwargs for DynamoDB: explicit endpoint, else the Airflow AWS connection.

    Without either, production code would silently talk to real AWS with whatever credentials lie around;
    we refuse instead, since the local defaults always set ``PIPELINES_DYNAMODB_ENDPOINT``.
    """
    settings = get_settings()
    if settings.dynamodb_endpoint:
        return {
            "endpoint_url": settings.dynamodb_endpoint,
            "region_name": settings.aws_region,
            "aws_access_key_id": _env("AWS_ACCESS_KEY_ID") or "testing",
            "aws_secret_access_key": _env("AWS_SECRET_ACCESS_KEY") or "testing",
        }
    conn = airflow_connection(AWS_CONN_ID)
    if conn is None:
        raise ConfigError(
            "DynamoDB is not configured: set PIPELINES_DYNAMODB_ENDPOINT (the local server that `make demo` "
            f"and `make airflow` start) or define the Airflow connection {AWS_CONN_ID!r}."
        )
    extra = conn.get("extra") or {}
    kwargs = {"region_name": extra.get("region_name") or settings.aws_region}
    if extra.get("endpoint_url"):
        kwargs["endpoint_url"] = extra["endpoint_url"]
    if conn.get("login"):
        kwargs["aws_access_key_id"] = conn["login"]
        kwargs["aws_secret_access_key"] = conn.get("password")
    return kwargs

"""Shared fixtures: a real PostgreSQL (the machine's, or an embedded one), a scratch database per test,
a temporary data root, a DynamoDB-API server on loopback, and an isolated Airflow home.

The environment is set before anything imports Airflow, so tests never touch a developer's own Airflow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="ubm-tests-"))

os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["PIPELINES_HOME"] = str(_SESSION_DIR / "home")
os.environ["PIPELINES_LOCAL_SERVICES"] = "1"  # tests are development mode (tests/unit/test_settings.py checks off)
for _var in ("PIPELINES_PG_DSN", "PIPELINES_DATA_ROOT", "PIPELINES_DYNAMODB_ENDPOINT",
             "AIRFLOW_CONN_PIPELINES_POSTGRES",
             "AIRFLOW_CONN_PIPELINES_AWS", "PIPELINES_MAX_BAD_SHARE"):
    os.environ.pop(_var, None)

from pipelines.settings import get_settings  # noqa: E402  (after the environment is set)


def _admin_dsn() -> str:
    """The server tests create their databases on: $PIPELINES_TEST_PG_ADMIN_DSN, the machine's, or embedded."""
    import psycopg2

    candidate = os.environ.get("PIPELINES_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        psycopg2.connect(candidate, connect_timeout=3).close()
        return candidate
    except psycopg2.OperationalError:
        from pipelines.services import ensure_embedded_postgres

        return ensure_embedded_postgres()


@pytest.fixture(scope="session")
def pg_admin_dsn():
    dsn = _admin_dsn()
    yield dsn
    if "127.0.0.1" not in dsn:
        from pipelines.services import stop_embedded_postgres

        stop_embedded_postgres()


def _with_db(dsn: str, name: str) -> str:
    from psycopg2.extensions import make_dsn, parse_dsn

    return make_dsn(**{**parse_dsn(dsn), "dbname": name})


def _libpq_to_uri(dsn: str) -> str:
    """Our settings take URIs; build one from a key=value DSN."""
    from urllib.parse import quote

    from psycopg2.extensions import parse_dsn

    p = parse_dsn(dsn)
    host = p.get("host", "")
    if host.startswith("/"):
        return f"postgresql://{p.get('user', 'postgres')}@/{p['dbname']}?host={quote(host, safe='/')}"
    return f"postgresql://{p.get('user', 'postgres')}@{host}:{p.get('port', 5432)}/{p['dbname']}"


def _scratch_database(admin_dsn: str, monkeypatch):
    """Create an empty database, point PIPELINES_PG_DSN at it; yields its DSN and drops it after."""
    import psycopg2

    name = f"ubm_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(admin_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    dsn = _libpq_to_uri(_with_db(admin_dsn, name))
    monkeypatch.setenv("PIPELINES_PG_DSN", dsn)
    get_settings.cache_clear()
    try:
        yield dsn
    finally:
        get_settings.cache_clear()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_dsn(pg_admin_dsn, monkeypatch):
    """A fresh, empty database for one test; PIPELINES_PG_DSN points at it."""
    yield from _scratch_database(pg_admin_dsn, monkeypatch)


@pytest.fixture(scope="module")
def pg_dsn_module(pg_admin_dsn):
    """A fresh database shared by one module's tests (for module-scoped fixtures that ingest data)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from _scratch_database(pg_admin_dsn, monkeypatch)


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    """An empty local data root for one test."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("PIPELINES_DATA_ROOT", str(root))
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def dynamodb_endpoint():
    """moto's DynamoDB-compatible server, over HTTP on loopback, for the whole session."""
    from pipelines.services import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata DB (SQLite in the session's temporary AIRFLOW_HOME), migrated once."""
    Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return os.environ["AIRFLOW_HOME"]


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)

import json

import pytest

from pipelines import settings
from pipelines.settings import ConfigError, configured_pg_dsn, dynamodb_config, get_settings


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    for var in ("PIPELINES_PG_DSN", "AIRFLOW_CONN_PIPELINES_POSTGRES", "PIPELINES_DYNAMODB_ENDPOINT",
                "AIRFLOW_CONN_PIPELINES_AWS"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_explicit_dsn_wins_over_airflow_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PIPELINES_POSTGRES", "postgres://u:p@db:5432/pipelines")
    assert configured_pg_dsn() == "postgresql://u:p@db:5432/pipelines"
    monkeypatch.setenv("PIPELINES_PG_DSN", "postgresql://x@y/z")
    get_settings.cache_clear()
    assert configured_pg_dsn() == "postgresql://x@y/z"


def test_airflow_json_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PIPELINES_POSTGRES", json.dumps(
        {"conn_type": "postgres", "host": "db", "port": 5433, "login": "u", "password": "p", "schema": "dw"}))
    assert configured_pg_dsn() == "postgresql://u:p@db:5433/dw"


def test_nothing_configured_means_embedded():
    assert configured_pg_dsn() is None


def test_dynamodb_refuses_to_guess(monkeypatch):
    with pytest.raises(ConfigError, match="DynamoDB is not configured"):
        dynamodb_config()
    monkeypatch.setenv("AIRFLOW_CONN_PIPELINES_AWS", json.dumps(
        {"conn_type": "aws", "login": "AK", "password": "SK",
         "extra": {"region_name": "ap-east-1", "endpoint_url": "http://127.0.0.1:5000"}}))
    assert dynamodb_config() == {"region_name": "ap-east-1", "endpoint_url": "http://127.0.0.1:5000",
                                 "aws_access_key_id": "AK", "aws_secret_access_key": "SK"}
    monkeypatch.setenv("PIPELINES_DYNAMODB_ENDPOINT", "http://127.0.0.1:9999")
    get_settings.cache_clear()
    assert dynamodb_config()["endpoint_url"] == "http://127.0.0.1:9999"


def test_data_root_defaults_under_home(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINES_HOME", str(tmp_path))
    monkeypatch.delenv("PIPELINES_DATA_ROOT", raising=False)
    get_settings.cache_clear()
    assert settings.get_settings().data_root == str(tmp_path / "data")


def test_production_never_falls_back_to_the_embedded_postgres(monkeypatch):
    monkeypatch.delenv("PIPELINES_LOCAL_SERVICES", raising=False)
    with pytest.raises(ConfigError, match="PostgreSQL is not configured: set PIPELINES_PG_DSN"):
        settings.pg_dsn()


def test_a_failing_connection_lookup_in_a_task_is_an_error_not_a_fallback(monkeypatch):
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    monkeypatch.setattr(settings, "_in_airflow_task", lambda: True)

    def unreachable(conn_id):
        raise ConnectionRefusedError("API server unreachable")

    monkeypatch.setattr(Connection, "get", staticmethod(unreachable))
    with pytest.raises(ConfigError, match="looking up the Airflow connection 'pipelines_postgres' failed"):
        settings.pg_dsn()

    def missing(conn_id):
        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")

    monkeypatch.setattr(Connection, "get", staticmethod(missing))
    monkeypatch.delenv("PIPELINES_LOCAL_SERVICES", raising=False)
    with pytest.raises(ConfigError, match="not configured"):  # not defined, and not development mode
        settings.pg_dsn()

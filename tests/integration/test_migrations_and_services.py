import os
from pathlib import Path

import boto3
import pytest

from pipelines import db, migrate
from pipelines.settings import dynamodb_config, get_settings

pytestmark = pytest.mark.integration


def test_migrations_are_idempotent_and_keep_their_own_version_table(pg_dsn):
    assert migrate.upgrade(pg_dsn) == migrate.upgrade(pg_dsn) == migrate.head()
    assert len(migrate.head()) == 4 and migrate.head() >= "0004"
    tables = {r["table_name"] for r in db.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    assert {"pipelines_schema_version", "runs", "run_metrics", "quarantine", "piwik_track"} <= tables
    assert "alembic_version" not in tables  # Airflow's metadata may share the database


def test_dynamodb_api_over_http(dynamodb_endpoint, monkeypatch):
    monkeypatch.setenv("PIPELINES_DYNAMODB_ENDPOINT", dynamodb_endpoint)
    get_settings.cache_clear()
    client = boto3.client("dynamodb", **dynamodb_config())
    client.create_table(TableName="smoke", KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    client.put_item(TableName="smoke", Item={"user_id": {"S": "u1"}, "n": {"N": "3"}})
    assert client.get_item(TableName="smoke", Key={"user_id": {"S": "u1"}})["Item"]["n"] == {"N": "3"}
    client.delete_table(TableName="smoke")


@pytest.fixture
def open_home():
    """A home the server user can reach (pytest's own temporary folders are closed to other users)."""
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="ubm-embedded-"))
    home.chmod(0o755)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_embedded_postgres_starts_and_stops(open_home, monkeypatch):
    from pipelines import services

    monkeypatch.setenv("PIPELINES_HOME", str(open_home / "home"))
    get_settings.cache_clear()
    dsn = services.ensure_embedded_postgres()
    try:
        assert db.query("SELECT 1 AS one", dsn=dsn) == [{"one": 1}]
    finally:
        assert services.stop_embedded_postgres() is True
    assert services.stop_embedded_postgres() is False
    get_settings.cache_clear()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_a_data_folder_the_server_user_cannot_reach_is_a_clear_error(tmp_path, monkeypatch):
    from pipelines import services
    from pipelines.settings import ConfigError

    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    monkeypatch.setenv("PIPELINES_HOME", str(closed / "home"))
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="closed to other users; set PIPELINES_HOME"):
        services.ensure_embedded_postgres()
    get_settings.cache_clear()

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


def test_embedded_postgres_starts_and_stops(tmp_path, monkeypatch):
    from pipelines import services

    monkeypatch.setenv("PIPELINES_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    dsn = services.ensure_embedded_postgres()
    assert db.query("SELECT 1 AS one", dsn=dsn) == [{"one": 1}]
    assert services.stop_embedded_postgres() is True
    assert services.stop_embedded_postgres() is False
    get_settings.cache_clear()

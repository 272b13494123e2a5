"""The recommendations API for real: uvicorn in a subprocess on a loopback port, DynamoDB = moto's server,
requests over HTTP with httpx."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipelines.recs.dynamo import RecsStore
from pipelines.recs.schema import RecItem, RecRecord, fallback_key
from pipelines.settings import get_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KNOWN = "00000c289a1829a808ac09c00daf10bc3c4e223b"
UNKNOWN = "ffffffffffffffffffffffffffffffffffffffff"
ROUTE = "/users/{user_id}/recommendations"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_api(endpoint: str, table: str) -> Iterator[httpx.Client]:
    """`uvicorn pipelines.recs.api:app` in a subprocess; yields a client on its base URL."""
    port = _free_port()
    env = {**os.environ, "PIPELINES_DYNAMODB_ENDPOINT": endpoint, "PIPELINES_RECS_TABLE": table,
           "PIPELINES_RECS_POINTER_TTL": "0.3"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "pipelines.recs.api:app", "--host", "127.0.0.1",
                                 "--port", str(port), "--log-level", "warning"],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        client.get("/openapi.json")
                        break
                    except httpx.TransportError:
                        if proc.poll() is not None or time.monotonic() > deadline:
                            log.seek(0)
                            raise RuntimeError(f"the API did not start:\n{log.read().decode()}") from None
                        time.sleep(0.1)
                yield client
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _store(endpoint: str, table: str) -> RecsStore:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINES_DYNAMODB_ENDPOINT", endpoint)
        get_settings.cache_clear()
        store = RecsStore(table)
    get_settings.cache_clear()
    return store


def _version(store: RecsStore, version: str, day: str) -> None:
    """One known user with 20 artists, and the three levels of cold-start lists."""
    store.write_records([
        RecRecord(KNOWN, version, day, "user_user_cf",
                  [RecItem(f"{version} artist {k}", round(1 - k / 40, 4), f"mbid-{k}" if k % 2 else None)
                   for k in range(20)]),
        RecRecord(fallback_key("Germany", "25-34"), version, day, "fallback:country_age", [RecItem("Rammstein", 9)]),
        RecRecord(fallback_key("Germany"), version, day, "fallback:country", [RecItem("Kraftwerk", 8)]),
        RecRecord(fallback_key(), version, day, "fallback:global", [RecItem("Radiohead", 7), RecItem("Muse", 6)]),
    ])


@pytest.fixture(scope="module")
def api(dynamodb_endpoint) -> Iterator[httpx.Client]:
    """An API over a table with version v1 published."""
    table = f"recs_api_{uuid.uuid4().hex[:8]}"
    store = _store(dynamodb_endpoint, table)
    store.ensure_table()
    _version(store, "v1", "2024-03-01")
    store.publish("v1", generated_on="2024-03-01", item_count=4)
    with running_api(dynamodb_endpoint, table) as client:
        yield client
    store.client.delete_table(TableName=table)


def recs(client: httpx.Client, user_id: str, **params) -> httpx.Response:
    return client.get(f"/users/{user_id}/recommendations", params=params)


def test_known_user_gets_their_list_truncated_to_n(api):
    body = recs(api, KNOWN).json()
    assert {k: body[k] for k in ("user_id", "version", "generated_on", "source", "known_user")} == {
        "user_id": KNOWN, "version": "v1", "generated_on": "2024-03-01", "source": "user_user_cf",
        "known_user": True}
    assert [r["rank"] for r in body["recommendations"]] == list(range(1, 11))
    assert body["recommendations"][:2] == [{"rank": 1, "artist": "v1 artist 0", "mbid": None, "score": 1.0},
                                           {"rank": 2, "artist": "v1 artist 1", "mbid": "mbid-1", "score": 0.975}]
    assert len(recs(api, KNOWN, n=3).json()["recommendations"]) == 3
    assert len(recs(api, KNOWN, n=100).json()["recommendations"]) == 20


@pytest.mark.parametrize(("params", "source", "first"), [
    ({"country": "Germany", "age": 30}, "fallback:country_age", "Rammstein"),
    ({"country": "Germany", "age": 70}, "fallback:country", "Kraftwerk"),
    ({"country": "Germany"}, "fallback:country", "Kraftwerk"),
    ({"country": "France", "age": 30}, "fallback:global", "Radiohead"),
    ({"age": 30}, "fallback:global", "Radiohead"),
    ({}, "fallback:global", "Radiohead"),
])
def test_unknown_user_gets_the_most_specific_fallback(api, params, source, first):
    resp = recs(api, UNKNOWN, **params)
    assert resp.status_code == 200
    body = resp.json()
    assert (body["known_user"], body["source"], body["version"]) == (False, source, "v1")
    assert body["recommendations"][0]["artist"] == first
    assert len(recs(api, UNKNOWN, n=1).json()["recommendations"]) == 1


@pytest.mark.parametrize("bad_id", ["00000C289A1829A808AC09C00DAF10BC3C4E223B", "abc", KNOWN + "0", "g" * 40])
def test_bad_user_id_is_422_naming_the_format(api, bad_id):
    resp = recs(api, bad_id)
    assert resp.status_code == 422
    assert "user_id must be a Last.fm user id: 40 lowercase hexadecimal characters" in resp.json()["message"]


@pytest.mark.parametrize(("params", "message"), [
    ({"n": 0}, "n must be an integer from 1 to 100, got '0'"),
    ({"n": 1000}, "n must be an integer from 1 to 100, got '1000'"),
    ({"n": "ten"}, "n must be an integer from 1 to 100, got 'ten'"),
    ({"age": 121}, "age must be an integer from 0 to 120"),
    ({"country": "x" * 65}, "country must be a country name of at most 64 characters"),
])
def test_bad_parameters_are_422_with_a_clear_message(api, params, message):
    resp = recs(api, KNOWN, **params)
    assert resp.status_code == 422
    assert message in resp.json()["message"]


def test_health_and_openapi(api):
    health = api.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "version": "v1", "generated_on": "2024-03-01",
                             "table": health.json()["table"]}
    assert health.json()["table"].startswith("recs_api_")
    spec = api.get("/openapi.json").json()
    assert {ROUTE, "/health"} <= set(spec["paths"])
    assert spec["info"]["title"] == "User recommendations"
    assert api.get("/docs").status_code == 200


def test_lifecycle_503_until_published_then_switch(dynamodb_endpoint):
    table = f"recs_api_{uuid.uuid4().hex[:8]}"
    store = _store(dynamodb_endpoint, table)
    with running_api(dynamodb_endpoint, table) as client:
        resp = client.get("/health")
        assert (resp.status_code, resp.json()) == (503, {"detail": f"table {table} does not exist"})
        assert recs(client, KNOWN).status_code == 503

        store.ensure_table()
        _version(store, "v1", "2024-03-01")  # written, not published yet
        for resp in (client.get("/health"), recs(client, KNOWN)):
            assert resp.status_code == 503
            assert "no recommendations version has been published yet" in resp.json()["detail"]

        store.publish("v1", generated_on="2024-03-01", item_count=4)
        assert client.get("/health").status_code == 200
        assert recs(client, KNOWN).json()["version"] == "v1"

        _version(store, "v2", "2024-03-02")
        time.sleep(0.4)  # past the pointer cache
        assert recs(client, KNOWN).json()["version"] == "v1"  # v2 is written but not published
        store.publish("v2", generated_on="2024-03-02", item_count=4)
        deadline = time.monotonic() + 5
        while (body := recs(client, KNOWN).json())["version"] != "v2":
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
        assert body["recommendations"][0]["artist"] == "v2 artist 0"
        assert body["generated_on"] == "2024-03-02"
    store.client.delete_table(TableName=table)


def test_cold_start_lists_are_read_once_per_version(dynamodb_endpoint):
    """A published version's cold-start lists never change, so the API keeps them in memory: a rewrite of v1's
    list behind its back is not seen, while the next version's list is served as soon as it is published."""
    table = f"recs_api_{uuid.uuid4().hex[:8]}"
    store = _store(dynamodb_endpoint, table)
    store.ensure_table()
    _version(store, "v1", "2024-03-01")
    store.publish("v1", generated_on="2024-03-01", item_count=4)

    def first(client: httpx.Client, **params) -> tuple[str, str]:
        body = recs(client, UNKNOWN, **params).json()
        return body["version"], body["recommendations"][0]["artist"]

    with running_api(dynamodb_endpoint, table) as client:
        assert first(client, country="Germany", age=30) == ("v1", "Rammstein")
        store.write_records([RecRecord(fallback_key("Germany", "25-34"), "v1", "2024-03-01", "fallback:country_age",
                                       [RecItem("Scooter", 9)])])
        assert first(client, country="Germany", age=30) == ("v1", "Rammstein")  # from memory
        assert first(client, country="Germany", age=31) == ("v1", "Rammstein")  # same band, same entry
        assert first(client, country="Germany", age=70) == ("v1", "Kraftwerk")  # another list: read now
        _version(store, "v2", "2024-03-02")
        store.write_records([RecRecord(fallback_key("Germany", "25-34"), "v2", "2024-03-02", "fallback:country_age",
                                       [RecItem("Einstürzende Neubauten", 9)])])
        store.publish("v2", generated_on="2024-03-02", item_count=4)
        deadline = time.monotonic() + 5
        while (got := first(client, country="Germany", age=30))[0] != "v2":
            assert time.monotonic() < deadline, got
            time.sleep(0.05)
        assert got == ("v2", "Einstürzende Neubauten")
    store.client.delete_table(TableName=table)


def test_unreachable_dynamodb_is_503_not_500():
    with running_api(f"http://127.0.0.1:{_free_port()}", "anything") as client:
        for resp in (client.get("/health"), recs(client, KNOWN)):
            assert resp.status_code == 503
            assert "DynamoDB is unreachable" in resp.json()["detail"]

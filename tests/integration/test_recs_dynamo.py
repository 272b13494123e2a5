"""The recommendations store against a real DynamoDB API (moto's server over HTTP), throttling simulated by
a thin proxy around the real client."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from pipelines.recs.dynamo import (
    CurrentVersionError,
    NoPublishedVersion,
    RecsStore,
    UnprocessedItemsError,
    make_client,
)
from pipelines.recs.schema import RecItem, RecRecord, fallback_key
from pipelines.settings import get_settings

pytestmark = pytest.mark.integration


def uid(i: int) -> str:
    return f"{i:040x}"


def records(version: str, n: int, generated_on: str = "2024-03-01", tag: str = "") -> list[RecRecord]:
    """n users, 5 items each, items depending on version and tag so that versions are told apart."""
    return [RecRecord(uid(i), version, generated_on, "user_user_cf",
                      [RecItem(f"artist {version}{tag} {i} {k}", 1.0 / (k + 1), f"mbid-{k}" if k % 2 else None)
                       for k in range(5)])
            for i in range(n)]


def fallbacks(version: str, generated_on: str = "2024-03-01") -> list[RecRecord]:
    return [
        RecRecord(fallback_key("Germany", "25-34"), version, generated_on, "fallback:country_age", [RecItem("a", 1)]),
        RecRecord(fallback_key("Germany"), version, generated_on, "fallback:country", [RecItem("b", 1)]),
        RecRecord(fallback_key(), version, generated_on, "fallback:global", [RecItem("c", 1)]),
    ]


@pytest.fixture
def dynamo_env(dynamodb_endpoint, monkeypatch):
    monkeypatch.setenv("PIPELINES_DYNAMODB_ENDPOINT", dynamodb_endpoint)
    get_settings.cache_clear()
    yield dynamodb_endpoint
    get_settings.cache_clear()


@pytest.fixture
def store(dynamo_env):
    s = RecsStore(f"recs_{uuid.uuid4().hex[:10]}", backoff_base=0.001, backoff_cap=0.01)
    s.ensure_table()
    yield s
    s.client.delete_table(TableName=s.table_name)


def scan_all(store: RecsStore) -> list[dict]:
    pages = store.client.get_paginator("scan").paginate(TableName=store.table_name)
    items = [item for page in pages for item in page["Items"]]
    return sorted(items, key=lambda it: (it["user_id"]["S"], it["version"]["S"]))


class FlakyClient:
    """The real client, except that its first ``flaky_calls`` BatchWriteItem calls write only half of the
    batch and hand the rest back as UnprocessedItems, as DynamoDB does when throttling."""

    def __init__(self, real, flaky_calls: int) -> None:
        self._real = real
        self.remaining = flaky_calls
        self.calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._real, name)

    def batch_write_item(self, RequestItems: dict, **kwargs):
        with self._lock:
            self.calls += 1
            flaky = self.remaining > 0
            self.remaining -= flaky
        if not flaky:
            return self._real.batch_write_item(RequestItems=RequestItems, **kwargs)
        ((table, requests),) = RequestItems.items()
        written, held = requests[: len(requests) // 2], requests[len(requests) // 2:]
        resp = self._real.batch_write_item(RequestItems={table: written}) if written else {}
        return {**resp, "UnprocessedItems": {table: held}}


class ThrottlingClient(FlakyClient):
    """The first ``flaky_calls`` BatchWriteItem calls fail as throttled, writing nothing."""

    def batch_write_item(self, RequestItems: dict, **kwargs):
        with self._lock:
            self.calls += 1
            flaky = self.remaining > 0
            self.remaining -= flaky
        if flaky:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              "BatchWriteItem")
        return self._real.batch_write_item(RequestItems=RequestItems, **kwargs)


def test_ensure_table_is_idempotent(store):
    assert store.ensure_table() is False
    assert store.ensure_table() is False
    desc = store.client.describe_table(TableName=store.table_name)["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in desc["KeySchema"]} == {"user_id": "HASH", "version": "RANGE"}
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = store.client.describe_time_to_live(TableName=store.table_name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_write_and_get_roundtrip(store):
    rec = RecRecord(uid(1), "v1", "2024-03-01", "user_user_cf",
                    [RecItem("Björk", 0.123456789, "87c5dedd-371d-4a53-9f7f-80522fb7f3cb"), RecItem("Mùm", 2e-9)])
    stats = store.write_records([rec], ttl_days=14)
    assert (stats.items, stats.batches, stats.unprocessed_retries) == (1, 1, 0)
    got = store.get(uid(1), "v1")
    assert got == RecRecord(uid(1), "v1", "2024-03-01", "user_user_cf",
                            [RecItem("Björk", 0.123457, "87c5dedd-371d-4a53-9f7f-80522fb7f3cb"), RecItem("Mùm", 2e-9)])
    raw = store.client.get_item(TableName=store.table_name,
                                Key={"user_id": {"S": uid(1)}, "version": {"S": "v1"}})["Item"]
    assert raw["expires_at"] == {"N": str(1709251200 + 14 * 86400)}  # 2024-03-01T00:00Z + 14 days
    assert "mbid" not in raw["items"]["L"][1]["M"]
    assert store.get(uid(2), "v1") is None
    with pytest.raises(NoPublishedVersion):
        store.get(uid(1))


def test_many_records_across_threads_all_land(store):
    recs = records("v1", 380)
    stats = store.write_records(iter(recs), threads=4)
    assert (stats.items, stats.batches) == (380, 16)
    assert store.scan_versions() == {"v1": 380}
    for r in recs[::37]:
        assert store.get(r.user_id, "v1") == RecRecord(r.user_id, "v1", r.generated_on, r.source,
                                                       [RecItem(i.artist, round(i.score, 6), i.mbid) for i in r.items])


def test_duplicate_keys_in_one_batch_keep_the_later_record(store):
    first, second = records("v1", 1, tag="a")[0], records("v1", 1, tag="b")[0]
    stats = store.write_records([first, *records("v1", 3)[1:], second])
    assert (stats.items, stats.duplicates_dropped) == (3, 1)
    assert store.get(uid(0), "v1").items[0].artist == "artist v1b 0 0"


def test_writes_stream_through_a_bounded_queue(store):
    produced = 0

    def gen():
        nonlocal produced
        for r in records("v1", 1000):
            produced += 1
            yield r

    lags = []

    class Watching(FlakyClient):
        def batch_write_item(self, RequestItems: dict, **kwargs):
            lags.append(produced)
            return super().batch_write_item(RequestItems=RequestItems, **kwargs)

    store.client = Watching(store.client, flaky_calls=0)
    stats = store.write_records(gen(), threads=2)
    assert stats.items == 1000
    # call k (0-based) sees at most: k batches done + 2 in flight + 4 queued + 1 being built, of 25 each
    assert all(lag <= (k + 2 + 4 + 1) * 25 for k, lag in enumerate(lags)), lags


def test_unprocessed_items_are_retried_until_they_land(store):
    flaky = FlakyClient(store.client, flaky_calls=12)
    store.client = flaky
    stats = store.write_records(records("v1", 200), threads=4)
    assert stats.items == 200
    assert stats.unprocessed_retries == 12
    assert flaky.calls == stats.batches == 8 + 12
    assert store.scan_versions() == {"v1": 200}


def test_throttling_errors_are_retried(store):
    store.client = ThrottlingClient(store.client, flaky_calls=5)
    stats = store.write_records(records("v1", 100), threads=2)
    assert (stats.items, stats.throttle_retries) == (100, 5)
    assert store.scan_versions() == {"v1": 100}


def test_persistent_throttling_raises_instead_of_dropping(store):
    store.client = FlakyClient(store.client, flaky_calls=10**6)
    store.max_attempts = 4
    with pytest.raises(UnprocessedItemsError, match=r"unprocessed .* after 4 attempts"):
        store.write_records(records("v1", 100), threads=2)


def test_publish_switches_atomically_and_never_rolls_back(store):
    users = [uid(i) for i in range(60)]
    store.write_records(records("v1", 60, "2024-03-01"))
    assert store.current() is None
    assert store.publish("v1", generated_on="2024-03-01", item_count=60) is True
    store.write_records(records("v2", 60, "2024-03-02"))
    # v2 is fully written but not published: every reader still gets v1
    assert {store.get(u).version for u in users} == {"v1"}

    observed = _read_while(store, users[:10], lambda: store.publish("v2", generated_on="2024-03-02",
                                                                    item_count=60))
    assert observed["missing"] == []  # every read of the pointed version found its item
    assert {"v1", "v2"} <= set(observed["versions"])  # the readers really ran across the switch
    assert observed["versions"] == sorted(observed["versions"])  # and never went back to v1 after it
    assert {store.get(u).version for u in users} == {"v2"}

    pointer = store.current()
    assert (pointer["current_version"], pointer["generated_on"], pointer["item_count"]) == ("v2", "2024-03-02", 60)
    assert [h["version"] for h in pointer["history"]] == ["v1"]

    # a backfill of an older day must not roll the served version back
    store.write_records(records("v0", 60, "2024-02-28"))
    assert store.publish("v0", generated_on="2024-02-28", item_count=60) is False
    assert store.current() == pointer
    # the same day recomputed under a new version name may replace it
    assert store.publish("v2b", generated_on="2024-03-02", item_count=60) is True
    assert store.versions() == ["v2b", "v2", "v1"]


def _read_while(store, users: list[str], action, rounds: int = 3) -> dict:
    """Read like the API (one pointer read, then that version's items) in a thread while ``action`` runs;
    returns the versions read, in order, and every read whose item was missing."""
    versions: list[str] = []
    missing: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            version = store.current()["current_version"]
            for u in users:
                record = store.get(u, version)
                if record is None or record.version != version:
                    missing.append(f"{version}/{u}")
            versions.append(version)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        while len(versions) < rounds:  # reads before the action
            time.sleep(0.01)
        action()
        seen = len(versions)
        while len(versions) < seen + rounds:  # and after it
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
    return {"versions": versions, "missing": missing}


def test_the_reader_check_catches_a_version_published_before_its_items(store):
    """The check above can fail: publishing a version whose items are not written is seen by readers."""
    users = [uid(i) for i in range(10)]
    store.write_records(records("v1", 10, "2024-03-01"))
    store.publish("v1", generated_on="2024-03-01", item_count=10)
    observed = _read_while(store, users, lambda: store.publish("v9", generated_on="2024-03-09", item_count=10))
    assert observed["missing"] and all(m.startswith("v9/") for m in observed["missing"])


def test_two_publishers_racing_end_on_the_newest_with_both_in_history(store):
    store.write_records(records("v1", 20, "2024-03-01"))
    store.publish("v1", generated_on="2024-03-01", item_count=20)
    for version, day in (("v2", "2024-03-02"), ("v3", "2024-03-03")):
        store.write_records(records(version, 20, day))
    results: dict[str, bool] = {}
    barrier = threading.Barrier(2)

    def publisher(version: str, day: str) -> None:
        barrier.wait()
        results[version] = store.publish(version, generated_on=day, item_count=20)

    threads = [threading.Thread(target=publisher, args=a) for a in (("v2", "2024-03-02"), ("v3", "2024-03-03"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pointer = store.current()
    assert pointer["current_version"] == "v3" and results["v3"] is True
    # v2 either went live first and was replaced (in the history), or lost the race to the newer v3 (False)
    assert (results["v2"] and "v2" in store.versions()) or results["v2"] is False
    assert pointer["revision"] == 2 + int(results["v2"])


def test_rerunning_a_version_leaves_identical_contents(store):
    def run() -> None:
        store.write_records([*records("v1", 120), *fallbacks("v1")], threads=3)
        assert store.publish("v1", generated_on="2024-03-01", item_count=123) is True

    run()
    before = scan_all(store)
    run()
    assert scan_all(store) == before
    assert len(before) == 124  # 120 users, 3 fallback lists, the pointer


def test_delete_version_removes_exactly_its_keys_and_refuses_the_current(store):
    for version, day in (("v1", "2024-03-01"), ("v2", "2024-03-02")):
        store.write_records([*records(version, 80, day), *fallbacks(version, day)])
    store.publish("v2", generated_on="2024-03-02", item_count=83)
    keys = [uid(i) for i in range(80)] + [r.user_id for r in fallbacks("v1")]
    assert store.delete_version("v1", iter(keys), threads=3) == 83
    assert store.scan_versions() == {"v2": 83}
    with pytest.raises(CurrentVersionError):
        store.delete_version("v2", keys)
    assert store.scan_versions() == {"v2": 83}


def test_fallback_walks_country_band_then_country_then_global(store):
    store.write_records(fallbacks("v1"))
    store.publish("v1", generated_on="2024-03-01", item_count=3)
    assert store.get_fallback("Germany", "25-34").source == "fallback:country_age"
    assert store.get_fallback("Germany", "18-24").source == "fallback:country"
    assert store.get_fallback("Germany", None).source == "fallback:country"
    assert store.get_fallback("France", "25-34").source == "fallback:global"
    assert store.get_fallback(None, "25-34", "v1").source == "fallback:global"
    with pytest.raises(LookupError):
        store.get_fallback("Germany", "25-34", version="v9")


def test_default_client_comes_from_settings(dynamo_env, monkeypatch):
    monkeypatch.setenv("PIPELINES_RECS_TABLE", "from_env")
    s = RecsStore()
    assert s.table_name == "from_env"
    assert s.client.meta.endpoint_url == dynamo_env
    assert s.client.meta.config.max_pool_connections >= 8  # at least the writer threads
    serving = make_client(64, serving=True).meta.config
    assert (serving.max_pool_connections, serving.connect_timeout, serving.read_timeout) == (64, 2, 3)

"""Daily user recommendations in DynamoDB: versioned items, a pointer switched atomically, bounded-memory writes.

Table (``PIPELINES_RECS_TABLE``, default ``user_recommendations``): partition key ``user_id`` (S), sort key
``version`` (S), on-demand billing, TTL on ``expires_at``.

* One item per (user, version): ``items`` (list of maps ``{artist, score, mbid?}``, scores as numbers with 6
  significant digits), ``source``, ``generated_on`` (ISO date) and ``expires_at`` (epoch seconds,
  ``generated_on`` + ``ttl_days``).
* Cold-start lists are ordinary items whose ``user_id`` is :func:`schema.fallback_key` (``#fallback#DE#25-34``).
* The pointer is the item (``#meta``, ``current``): ``current_version``, ``generated_on``, ``item_count``,
  ``published_at``, ``revision`` and ``history`` (the previous pointers, newest first, bounded).

A version's items are written first, under their own sort key, while readers keep following the pointer; one
conditional write then switches the pointer, so readers see the old version or the new one, never a mixture.
The condition also refuses to move the pointer to an older ``generated_on`` (a backfill must not roll back).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from botocore.config import Config
from botocore.exceptions import ClientError

from pipelines.errors import PipelineError
from pipelines.recs.schema import RecItem, RecRecord, fallback_key

log = logging.getLogger(__name__)

DEFAULT_TABLE = "user_recommendations"
META_USER = "#meta"
META_VERSION = "current"
DEFAULT_TTL_DAYS = 90  # a safety net for leaked versions; cleanup deletes old versions daily
HISTORY_LIMIT = 30
BATCH_SIZE = 25  # DynamoDB's limit for BatchWriteItem
#: Error codes worth another try after a pause (on top of botocore's own retries).
RETRYABLE_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable",
})


class UnprocessedItemsError(PipelineError):
    """DynamoDB kept throttling a batch past our retry budget. Retryable at task level: writes are idempotent."""


class NoPublishedVersion(PipelineError):
    """The pointer does not exist yet: no version has been published."""


class CurrentVersionError(PipelineError):
    """Refused: the operation would remove the version being served."""


def table_name_from_env() -> str:
    return os.environ.get("PIPELINES_RECS_TABLE") or DEFAULT_TABLE


def client_config(max_pool_connections: int = 32, *, serving: bool = False) -> Config:
    """Timeouts and retries: short for the API (fail fast into a 503), patient for batch writes."""
    if serving:
        return Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "max_attempts": 2},
                      max_pool_connections=max_pool_connections)
    return Config(connect_timeout=5, read_timeout=30, retries={"mode": "adaptive", "max_attempts": 6},
                  max_pool_connections=max_pool_connections)


def make_client(max_pool_connections: int = 32, *, serving: bool = False):
    """A low-level DynamoDB client configured by :func:`pipelines.settings.dynamodb_config`."""
    import boto3  # imported here so that importing this module (e.g. by the API) stays cheap

    from pipelines.settings import dynamodb_config

    return boto3.client("dynamodb", **dynamodb_config(),
                        config=client_config(max_pool_connections, serving=serving))


# ------------------------------------------------------------------------------------------ (de)serialising
def format_score(score: float) -> str:
    """A DynamoDB number with 6 significant digits (DynamoDB has no NaN or infinity: refuse them early)."""
    if not math.isfinite(score):
        raise ValueError(f"score must be finite, got {score!r}")
    return format(Decimal(f"{score:.6g}"), "f") if score else "0"


def expires_at(generated_on: str, ttl_days: int = DEFAULT_TTL_DAYS) -> int:
    """Epoch seconds of midnight UTC ``ttl_days`` after the snapshot day."""
    day = date.fromisoformat(generated_on) + timedelta(days=ttl_days)
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def record_to_item(record: RecRecord, ttl_days: int = DEFAULT_TTL_DAYS) -> dict:
    """The DynamoDB item (attribute values) for one record."""
    items = []
    for it in record.items:
        m = {"artist": {"S": it.artist}, "score": {"N": format_score(it.score)}}
        if it.mbid:
            m["mbid"] = {"S": it.mbid}
        items.append({"M": m})
    return {
        "user_id": {"S": record.user_id},
        "version": {"S": record.version},
        "items": {"L": items},
        "source": {"S": record.source},
        "generated_on": {"S": record.generated_on},
        "expires_at": {"N": str(expires_at(record.generated_on, ttl_days))},
    }


def item_to_record(item: dict) -> RecRecord:
    return RecRecord(
        user_id=item["user_id"]["S"],
        version=item["version"]["S"],
        generated_on=item["generated_on"]["S"],
        source=item["source"]["S"],
        items=[RecItem(artist=m["M"]["artist"]["S"], score=float(m["M"]["score"]["N"]),
                       mbid=m["M"].get("mbid", {}).get("S"))
               for m in item.get("items", {}).get("L", [])],
    )


def _pointer_from_item(item: dict) -> dict:
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    out = {k: des.deserialize(v) for k, v in item.items() if k not in ("user_id", "version")}
    for key in ("item_count", "revision"):
        if key in out:
            out[key] = int(out[key])
    out["history"] = [{**h, "item_count": int(h.get("item_count", 0))} for h in out.get("history", [])]
    return out


# ---------------------------------------------------------------------------------------------- write stats
@dataclass
class WriteStats:
    """What one bulk write did."""

    items: int = 0
    batches: int = 0
    unprocessed_retries: int = 0  # BatchWriteItem calls repeated for items DynamoDB handed back
    throttle_retries: int = 0  # calls repeated after a throttling / transient error
    duplicates_dropped: int = 0  # same key twice in one batch: the later one kept
    seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


class _Counter:
    """WriteStats shared by worker threads."""

    def __init__(self) -> None:
        self.stats = WriteStats()
        self.lock = threading.Lock()

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)


# ------------------------------------------------------------------------------------------------ the store
class RecsStore:
    """Reads and writes the recommendations table. One instance is safe to share between threads."""

    def __init__(self, table_name: str | None = None, client=None, *, max_attempts: int = 10,
                 backoff_base: float = 0.05, backoff_cap: float = 5.0) -> None:
        self.table_name = table_name or table_name_from_env()
        self.client = client if client is not None else make_client()
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap

    def __repr__(self) -> str:
        return f"RecsStore({self.table_name!r})"

    # ------------------------------------------------------------------ table
    def ensure_table(self) -> bool:
        """Create the table if missing and enable TTL; returns whether it was created. Idempotent."""
        created = False
        try:
            self.client.describe_table(TableName=self.table_name)
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            try:
                self.client.create_table(
                    TableName=self.table_name,
                    KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"},
                               {"AttributeName": "version", "KeyType": "RANGE"}],
                    AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"},
                                          {"AttributeName": "version", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
                created = True
            except ClientError as exc2:  # another process created it in between
                if _code(exc2) != "ResourceInUseException":
                    raise
        self.client.get_waiter("table_exists").wait(TableName=self.table_name,
                                                    WaiterConfig={"Delay": 2, "MaxAttempts": 60})
        self._enable_ttl()
        return created

    def _enable_ttl(self) -> None:
        try:
            desc = self.client.describe_time_to_live(TableName=self.table_name)["TimeToLiveDescription"]
            if desc.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
                return
            self.client.update_time_to_live(
                TableName=self.table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
        except ClientError as exc:  # already enabled by a concurrent caller, or not supported by this server
            log.info("TTL on %s not changed: %s", self.table_name, exc)

    # ------------------------------------------------------------------ writes
    def write_records(self, records: Iterable[RecRecord], *, threads: int = 4,
                      ttl_days: int = DEFAULT_TTL_DAYS) -> WriteStats:
        """Write records in batches of 25 from ``threads`` threads; memory is bounded whatever the input size.

        Items DynamoDB hands back unprocessed (throttling) are retried with backoff; if they still are after
        ``max_attempts`` calls, :class:`UnprocessedItemsError` is raised: nothing is ever dropped silently.
        """
        requests = ({"PutRequest": {"Item": record_to_item(r, ttl_days)}} for r in records)
        return self._run_batches(requests, _put_key, threads)

    def delete_version(self, version: str, user_ids: Iterable[str], *, threads: int = 4) -> int:
        """Delete ``version``'s items for the given user ids (and fallback keys); returns the keys deleted.

        The pipeline knows each version's keys from its artifacts, so this needs no Scan. The version being
        served is refused.
        """
        pointer = self.current()
        if pointer is not None and pointer["current_version"] == version:
            raise CurrentVersionError(f"version {version!r} is the current one in {self.table_name}; "
                                      "publish another version before deleting it")
        requests = ({"DeleteRequest": {"Key": {"user_id": {"S": u}, "version": {"S": version}}}}
                    for u in user_ids)
        return self._run_batches(requests, _delete_key, threads).items

    def _run_batches(self, requests: Iterator[dict], key_of: Callable[[dict], tuple], threads: int) -> WriteStats:
        """Feed batches through a bounded queue to ``threads`` writers; the first failure stops everything."""
        threads = max(1, threads)
        pool_size = getattr(getattr(getattr(self.client, "meta", None), "config", None), "max_pool_connections", None)
        if pool_size is not None and threads > pool_size:
            log.warning("%d writer threads share %d HTTP connections: pass a client from make_client(%d)",
                        threads, pool_size, threads)
        counter = _Counter()
        batches: queue.Queue = queue.Queue(maxsize=threads * 2)
        failed = threading.Event()
        errors: list[BaseException] = []

        def worker() -> None:
            while (batch := batches.get()) is not None:
                if failed.is_set():
                    continue  # keep draining so the producer never blocks
                try:
                    self._write_batch(batch, counter)
                except BaseException as exc:  # handed to the calling thread below
                    errors.append(exc)
                    failed.set()

        started = time.perf_counter()
        pool = [threading.Thread(target=worker, name=f"recs-writer-{i}", daemon=True) for i in range(threads)]
        for t in pool:
            t.start()
        try:
            for batch in _batched(requests, key_of, counter):
                while not failed.is_set():
                    try:
                        batches.put(batch, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if failed.is_set():
                    break
        finally:
            for _ in pool:
                batches.put(None)
            for t in pool:
                t.join()
            counter.stats.seconds = time.perf_counter() - started
        if errors:
            raise errors[0]
        return counter.stats

    def _write_batch(self, requests: list[dict], counter: _Counter) -> None:
        """One BatchWriteItem, repeated for what comes back unprocessed or throttled, within max_attempts."""
        for attempt in range(self.max_attempts):
            if attempt:
                self._sleep(attempt)
            try:
                resp = self.client.batch_write_item(RequestItems={self.table_name: requests})
            except ClientError as exc:
                if _code(exc) not in RETRYABLE_CODES:
                    raise
                counter.add(throttle_retries=1)
                continue
            done = len(requests)
            requests = resp.get("UnprocessedItems", {}).get(self.table_name, [])
            counter.add(items=done - len(requests), batches=1)
            if not requests:
                return
            counter.add(unprocessed_retries=1)
        raise UnprocessedItemsError(
            f"DynamoDB still returned {len(requests)} items of a batch unprocessed (or throttled) after "
            f"{self.max_attempts} attempts writing {self.table_name}; nothing was skipped, the write failed. "
            "It is idempotent: retry the task, or raise the table's capacity.")

    def _sleep(self, attempt: int) -> None:
        """Exponential backoff with jitter, so that throttled writers do not retry in lockstep."""
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        time.sleep(delay / 2 + random.uniform(0, delay / 2))

    # ------------------------------------------------------------------ pointer
    def publish(self, version: str, *, generated_on: str, item_count: int) -> bool:
        """Make ``version`` the served one with one conditional write; False if the pointer is newer.

        The condition holds only if there is no pointer, or the pointer is still the one read here and its
        ``generated_on`` is not after ours. A concurrent publisher makes us re-read and decide again.
        Re-publishing the current version changes nothing and returns True.
        """
        date.fromisoformat(generated_on)  # ISO dates compare correctly as strings in the condition
        for _ in range(self.max_attempts):
            pointer = self.current()
            if pointer is not None:
                if pointer["current_version"] == version:
                    return True
                if pointer["generated_on"] > generated_on:
                    return False
            item = self._pointer_item(version, generated_on, item_count, pointer)
            if pointer is None:
                condition, values = "attribute_not_exists(user_id)", {}
            else:
                condition = "revision = :seen AND generated_on <= :g"
                values = {":seen": {"N": str(pointer.get("revision", 0))}, ":g": {"S": generated_on}}
            try:
                kwargs = {"ExpressionAttributeValues": values} if values else {}
                self.client.put_item(TableName=self.table_name, Item=item, ConditionExpression=condition,
                                     **kwargs)
                log.info("published %s (generated_on %s, %d items) in %s", version, generated_on, item_count,
                         self.table_name)
                return True
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
        raise PipelineError(f"could not publish {version!r}: the pointer kept changing under us")

    def _pointer_item(self, version: str, generated_on: str, item_count: int, previous: dict | None) -> dict:
        history = []
        if previous is not None:
            head = {"version": previous["current_version"],
                    **{k: previous[k] for k in ("generated_on", "item_count", "published_at")}}
            history = [{"M": {"version": {"S": h["version"]}, "generated_on": {"S": h["generated_on"]},
                              "item_count": {"N": str(h["item_count"])}, "published_at": {"S": h["published_at"]}}}
                       for h in [head, *previous["history"]] if h["version"] != version][:HISTORY_LIMIT]
        revision = (previous or {}).get("revision", 0) + 1
        return {
            "user_id": {"S": META_USER}, "version": {"S": META_VERSION},
            "current_version": {"S": version},
            "generated_on": {"S": generated_on},
            "item_count": {"N": str(int(item_count))},
            "published_at": {"S": datetime.now(UTC).isoformat(timespec="microseconds")},
            "revision": {"N": str(revision)},
            "history": {"L": history},
        }

    def current(self) -> dict | None:
        """The pointer (strongly consistent read): current_version, generated_on, item_count, published_at,
        revision, history; None before the first publish."""
        resp = self.client.get_item(TableName=self.table_name, ConsistentRead=True,
                                    Key=_key(META_USER, META_VERSION))
        return _pointer_from_item(resp["Item"]) if "Item" in resp else None

    def versions(self) -> list[str]:
        """The current version then the previous ones, newest first."""
        pointer = self.current()
        if pointer is None:
            return []
        return [pointer["current_version"], *(h["version"] for h in pointer["history"])]

    def _resolve(self, version: str | None) -> str:
        if version is not None:
            return version
        pointer = self.current()
        if pointer is None:
            raise NoPublishedVersion(f"no recommendations version has been published in {self.table_name}")
        return pointer["current_version"]

    # ------------------------------------------------------------------ reads
    def get(self, user_id: str, version: str | None = None) -> RecRecord | None:
        """A user's (or fallback key's) record in ``version`` (default: the current one), None if absent."""
        resp = self.client.get_item(TableName=self.table_name, Key=_key(user_id, self._resolve(version)))
        return item_to_record(resp["Item"]) if "Item" in resp else None

    def get_fallback(self, country: str | None, age_band: str | None, version: str | None = None) -> RecRecord:
        """The most specific cold-start list that exists: country+band, then country, then global.

        One BatchGetItem for all candidates. Raises LookupError if even the global list is missing.
        """
        version = self._resolve(version)
        candidates = list(dict.fromkeys(
            ([fallback_key(country, age_band)] if country and age_band else [])
            + ([fallback_key(country)] if country else [])
            + [fallback_key()]))
        found: dict[str, dict] = {}
        keys = [_key(c, version) for c in candidates]
        for attempt in range(self.max_attempts):
            if attempt:
                self._sleep(attempt)
            resp = self.client.batch_get_item(RequestItems={self.table_name: {"Keys": keys}})
            for item in resp.get("Responses", {}).get(self.table_name, []):
                found[item["user_id"]["S"]] = item
            keys = resp.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
            if not keys:
                break
        else:
            raise UnprocessedItemsError(f"fallback lookup in {self.table_name} kept being throttled")
        for candidate in candidates:
            if candidate in found:
                return item_to_record(found[candidate])
        raise LookupError(f"version {version!r} in {self.table_name} has no global fallback list")

    def scan_versions(self) -> dict[str, int]:
        """Items per version, by a full paginated Scan (keys only). For operations and tests, not pipelines."""
        counts: dict[str, int] = {}
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table_name, ProjectionExpression="#u, #v",
                                       ExpressionAttributeNames={"#u": "user_id", "#v": "version"}):
            for item in page.get("Items", []):
                if item["user_id"]["S"] != META_USER:
                    counts[item["version"]["S"]] = counts.get(item["version"]["S"], 0) + 1
        return counts


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _key(user_id: str, version: str) -> dict:
    return {"user_id": {"S": user_id}, "version": {"S": version}}


def _put_key(request: dict) -> tuple:
    item = request["PutRequest"]["Item"]
    return item["user_id"]["S"], item["version"]["S"]


def _delete_key(request: dict) -> tuple:
    key = request["DeleteRequest"]["Key"]
    return key["user_id"]["S"], key["version"]["S"]


def _batched(requests: Iterator[dict], key_of: Callable[[dict], tuple], counter: _Counter) -> Iterator[list[dict]]:
    """Batches of 25 distinct keys (DynamoDB rejects a batch naming one key twice: the later request wins)."""
    pending: dict[tuple, dict] = {}
    for request in requests:
        key = key_of(request)
        if key in pending:
            counter.add(duplicates_dropped=1)
        pending[key] = request
        if len(pending) == BATCH_SIZE:
            yield list(pending.values())
            pending = {}
    if pending:
        yield list(pending.values())


# ------------------------------------------------------------------------------------------ benchmark baseline
def bare_batch_writer_load(table_name: str, records: Iterable[RecRecord], client_kwargs: dict,
                           ttl_days: int = DEFAULT_TTL_DAYS) -> float:
    """Seconds to write ``records`` with a plain boto3 resource ``Table.batch_writer()``: the baseline that
    ``RecsStore.write_records`` is benchmarked against (same items, one thread, boto3's own retry of
    unprocessed items)."""
    import boto3

    table = boto3.resource("dynamodb", **client_kwargs).Table(table_name)
    started = time.perf_counter()
    with table.batch_writer(overwrite_by_pkeys=["user_id", "version"]) as writer:
        for r in records:
            writer.put_item(Item={
                "user_id": r.user_id, "version": r.version, "source": r.source, "generated_on": r.generated_on,
                "expires_at": expires_at(r.generated_on, ttl_days),
                "items": [{"artist": it.artist, "score": Decimal(format_score(it.score)),
                           **({"mbid": it.mbid} if it.mbid else {})} for it in r.items],
            })
    return time.perf_counter() - started

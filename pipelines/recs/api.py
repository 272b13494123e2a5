"""HTTP API serving the daily recommendations from DynamoDB (``uvicorn pipelines.recs.api:app``, ``make serve``).

Each request reads the version pointer once (cached in-process for ``PIPELINES_RECS_POINTER_TTL`` seconds,
default 5) and then only items of that version, so an answer never mixes two versions even while a new one is
being published. A version's cold-start lists never change once it is published, so they are cached in-process
per (version, country, age band): an unknown user costs one DynamoDB read (its own, missing, item) instead of
two (the load test in ``bench/recs_api_bench.py`` found the fallback read halving their throughput). Importing
this module contacts nothing: the store is built on the first request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Annotated

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pipelines.errors import PipelineError
from pipelines.recs import schema
from pipelines.recs.dynamo import RecsStore, UnprocessedItemsError, make_client, table_name_from_env
from pipelines.settings import ConfigError

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
DEFAULT_POINTER_TTL = 5.0
#: Cold-start lists kept in memory (an entry per version and distinct country / age band asked for; the
#: country is free text, so the cache is bounded and the least recently used entries go first).
FALLBACK_CACHE_SIZE = 4096
#: What each parameter must look like, for 422 answers a client can act on.
EXPECTED = {
    "user_id": "a Last.fm user id: 40 lowercase hexadecimal characters (the sha1 in the 360K dataset), "
               "e.g. 00000c289a1829a808ac09c00daf10bc3c4e223b",
    "n": "an integer from 1 to 100",
    "age": "an integer from 0 to 120",
    "country": "a country name of at most 64 characters, e.g. Germany",
}


class StoreUnavailable(PipelineError):
    """DynamoDB cannot answer (unreachable, table missing, not configured) or nothing is published."""


class Recommendation(BaseModel):
    rank: int = Field(description="1 = best")
    artist: str
    mbid: str | None = Field(None, description="MusicBrainz artist id, when known")
    score: float


class RecommendationsResponse(BaseModel):
    user_id: str
    version: str = Field(description="the model version served (one version per response)")
    generated_on: str = Field(description="ISO date of the data snapshot the version was computed from")
    source: str = Field(description="user_user_cf for known users; fallback:... for cold starts")
    known_user: bool = Field(description="False: the user had no list of their own, a cold-start list is served")
    recommendations: list[Recommendation]


class Health(BaseModel):
    status: str
    version: str
    generated_on: str
    table: str


class _Serving:
    """The lazily built store and the cached pointer, shared by request threads."""

    def __init__(self, store: RecsStore | None, pointer_ttl: float) -> None:
        self._store = store
        self.pointer_ttl = pointer_ttl
        self._lock = threading.Lock()
        self._pointer: dict | None = None
        self._fetched_at = 0.0
        self._fallbacks: OrderedDict[tuple, schema.RecRecord] = OrderedDict()
        self._fallback_lock = threading.Lock()

    @property
    def store(self) -> RecsStore:
        with self._lock:
            if self._store is None:
                try:
                    self._store = RecsStore(client=make_client(64, serving=True))  # > uvicorn's 40 threads
                except ConfigError as exc:
                    raise StoreUnavailable(str(exc)) from exc
            return self._store

    def table_name(self) -> str:
        return self._store.table_name if self._store is not None else table_name_from_env()

    def pointer(self, *, fresh: bool = False) -> dict:
        """The current pointer, at most ``pointer_ttl`` seconds old. Absence is not cached: the first publish
        shows up at once."""
        now = time.monotonic()
        if not fresh and self._pointer is not None and now - self._fetched_at < self.pointer_ttl:
            return self._pointer
        pointer = _call(lambda: self.store.current(), self.table_name())
        if pointer is None:
            raise StoreUnavailable(f"no recommendations version has been published yet (table {self.table_name()})")
        self._pointer, self._fetched_at = pointer, now
        return pointer

    def fallback(self, country: str | None, band: str | None, version: str) -> schema.RecRecord:
        """The cold-start list for an unknown user: read once per (version, country, band), then from memory.
        A missing global list (LookupError) is not cached."""
        key = (version, country, band)
        with self._fallback_lock:
            if key in self._fallbacks:
                self._fallbacks.move_to_end(key)
                return self._fallbacks[key]
        record = _call(lambda: self.store.get_fallback(country, band, version), self.table_name())
        with self._fallback_lock:
            self._fallbacks[key] = record
            while len(self._fallbacks) > FALLBACK_CACHE_SIZE:
                self._fallbacks.popitem(last=False)
        return record


def _call(fn, table: str):
    """Run a DynamoDB call, turning failures into StoreUnavailable (a 503, not a traceback)."""
    try:
        return fn()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise StoreUnavailable(f"table {table} does not exist") from exc
        log.warning("DynamoDB error: %s", exc)
        raise StoreUnavailable(f"DynamoDB error: {code or exc}") from exc
    except UnprocessedItemsError as exc:
        raise StoreUnavailable(f"DynamoDB is throttling reads of {table}") from exc
    except BotoCoreError as exc:
        log.warning("DynamoDB unreachable: %s", exc)
        raise StoreUnavailable(f"DynamoDB is unreachable: {type(exc).__name__}") from exc


def _pointer_ttl_from_env() -> float:
    return float(os.environ.get("PIPELINES_RECS_POINTER_TTL") or DEFAULT_POINTER_TTL)


def create_app(store: RecsStore | None = None) -> FastAPI:
    """The API over ``store`` (default: built on first use from the environment)."""
    serving = _Serving(store, _pointer_ttl_from_env())
    app = FastAPI(
        title="User recommendations",
        description="Daily artist recommendations for Last.fm users (user-user collaborative filtering), with "
                    "cold-start lists by country and age band for unknown users. Served from DynamoDB; every "
                    "answer comes from one published version.",
        version=API_VERSION,
    )
    app.state.serving = serving

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        problems = []
        for err in errors:
            field = str(err.get("loc", ["", "?"])[-1])
            expected = EXPECTED.get(field)
            problems.append(f"{field} must be {expected}, got {err.get('input')!r}" if expected
                            else f"{field}: {err.get('msg')}")
        detail = [{k: v for k, v in err.items() if k in ("type", "loc", "msg", "input")} for err in errors]
        return JSONResponse(status_code=422, content={"message": "; ".join(problems), "detail": detail})

    @app.get("/users/{user_id}/recommendations", response_model=RecommendationsResponse,
             responses={422: {"description": "invalid user id or parameters"},
                        503: {"description": "no version published yet, or DynamoDB unavailable"}})
    def recommendations(
        user_id: Annotated[str, Path(pattern=schema.USER_ID_PATTERN, description=EXPECTED["user_id"])],
        n: Annotated[int, Query(ge=1, le=100, description="how many artists to return")] = 10,
        country: Annotated[str | None, Query(max_length=64, description="cold starts: the user's country")] = None,
        age: Annotated[int | None, Query(ge=0, le=120, description="for cold starts: the user's age")] = None,
    ) -> RecommendationsResponse:
        """The user's recommendations in the current version; a cold-start list if the user is unknown."""
        pointer = serving.pointer()
        version, table = pointer["current_version"], serving.table_name()
        record = _call(lambda: serving.store.get(user_id, version), table)
        known = record is not None
        if record is None:
            try:
                record = serving.fallback((country or "").strip() or None, schema.age_band(age), version)
            except LookupError:
                log.warning("version %s has no fallback list", version)
                record = schema.RecRecord(user_id, version, pointer["generated_on"], "none")
        return RecommendationsResponse(
            user_id=user_id, version=version, generated_on=record.generated_on, source=record.source,
            known_user=known,
            recommendations=[Recommendation(rank=i, artist=it.artist, mbid=it.mbid, score=it.score)
                             for i, it in enumerate(record.items[:n], start=1)],
        )

    @app.get("/health", response_model=Health, responses={503: {"description": "table or published version missing"}})
    def health() -> Health:
        """200 when the table exists and a version is published (read fresh, not from the cache)."""
        pointer = serving.pointer(fresh=True)
        return Health(status="ok", version=pointer["current_version"], generated_on=pointer["generated_on"],
                      table=serving.table_name())

    return app


app = create_app()

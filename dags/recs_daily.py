"""
### User-user recommendations, daily, to DynamoDB

Reads the day's Last.fm-360K-format snapshot (`recs/raw/dt=YYYY-MM-DD/usersha1-artmbid-artname-plays.tsv` and
`usersha1-profile.tsv` in the data root), validates it (bad rows to the `quarantine` table), fits the user-user
model, computes every user's top-N unseen artists in shards (dynamic task mapping: each shard is its own task,
so Celery or Kubernetes workers share them), writes them to DynamoDB under a new version, and publishes that
version with one conditional write of the version pointer: the API switches from the previous complete version
to the new complete one at once. A held-out evaluation against popularity, popularity by country, item-item CF
and (on generated data) the planted-truth oracle runs beside the shards; its metrics go to the run registry.

**Which day a run processes**: the `day` Param when given (Trigger form: name the snapshot's own date);
otherwise the data interval's: `CronDataIntervalTimetable` at 02:00 UTC, so the run with logical date D covers
[D 02:00, D+1 02:00), starts once it is over, and reads the snapshot dated D (exported during day D). `begin`'s
log names the day.

**Rerun / backfill**: a version is `YYYYMMDD-<hash of the Params>`, so rerunning a day rewrites the same items
with the same content. A backfilled day older than the live version is computed and evaluated but neither
written nor published: the served recommendations never go back in time. `publish` and `cleanup` run under one
lock (and the one-slot `publish` pool), and cleanup only removes versions older than the live one that are not
kept for rollback, so concurrent runs of a backfill cannot delete what another is building or serving.

**Quality gate**: `publish` switches to the new version only if its held-out NDCG@10 is at least
(1 - `quality_tolerance`) x the live version's, measured on the same users; otherwise the run fails with both
figures and the live version stays.

**Failures**: a late snapshot is waited for (`wait_for_snapshot`, reschedule mode, up to 6 hours); more bad
rows than `max_bad_share` fails at once; a shard or write failure retries just that shard; `publish` refuses to
switch unless every shard landed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, PokeReturnValue, dag, task

from pipelines.dagkit import SENSOR, day_param, default_args, overrun_alert, share_param


@dag(
    dag_id="recs_daily",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),  # early, so historical days can be backfilled
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=6),
    deadline=overrun_alert(pendulum.duration(hours=3)),
    default_args=default_args("recommendations", retries=2, retry_minutes=5, timeout_minutes=90),
    tags=["recommendations", "dynamodb"],
    doc_md=__doc__,
    params={
        "day": day_param(),
        "k_neighbours": Param(200, type="integer", minimum=1, maximum=1000,
                              description="Neighbours per user (NDCG@10 0.195 at 100, 0.201 at 200, 0.203 at 400 "
                                          "on the 360K benchmark)."),
        "n_recs": Param(10, type="integer", minimum=1, maximum=100, description="Artists recommended per user."),
        "weighting": Param("bm25", enum=["bm25", "log", "tfidf", "none"], description="Play count weighting."),
        "profile_weight": Param(0.1, type="number", minimum=0, maximum=0.99,
                                description="Share of the similarity given to gender, age band and country."),
        "min_history": Param(3, type="integer", minimum=1,
                             description="Users with fewer artists get the cold-start list."),
        "neighbours": Param("approx", enum=["approx", "exact", "svd_hnsw"],
                            description="approx: pruned inverted index + exact re-scoring (0.96-0.97 of exact "
                                        "similarity, a fifth of its CPU); exact: every listener (O(users²)); "
                                        "svd_hnsw: the earlier 64-d SVD + HNSW, kept for comparison."),
        "index_postings": Param(300, type="integer", minimum=1, maximum=10_000_000,
                                description="approx: listeners kept per artist (more = closer to exact, slower)."),
        "rerank": Param(2, type="integer", minimum=0, maximum=20,
                        description="approx / svd_hnsw: candidates re-scored exactly per neighbour kept."),
        "svd_dim": Param(64, type="integer", minimum=2, maximum=1024, description="svd_hnsw only."),
        "shard_users": Param(50000, type="integer", minimum=100, description="Users per mapped shard task."),
        "eval_users": Param(5000, type="integer", minimum=0, description="Held-out users evaluated (0 = skip)."),
        "keep_versions": Param(2, type="integer", minimum=1, description="Versions kept for rollback."),
        "quality_tolerance": Param(0.05, type="number", minimum=0, maximum=1,
                                   description="Publish only if NDCG@10 is at least (1 - this) x the live "
                                               "version's (on the same held-out users); 1 = no gate."),
        "max_bad_share": share_param(what="lines"),
    },
)
def recs_daily():
    @task
    def begin(params=None, dag_run=None, data_interval_end=None, dag=None) -> str:
        """Check the run's conf and say which snapshot day it processes."""
        from pipelines.orchestration import begin

        return begin(params, dag_run, data_interval_end, interval_hour=2, dag=dag)

    @task.sensor(**SENSOR)
    def wait_for_snapshot(day: str, data_interval_end=None, dag_run=None) -> PokeReturnValue:
        """Wait (rescheduled, no slot held) until both files of the day's snapshot are there."""
        from pipelines.orchestration import poke_input
        from pipelines.recs import jobs

        ready = poke_input(jobs.snapshot_ready(day), day, "the Last.fm snapshot", data_interval_end, dag_run)
        return PokeReturnValue(is_done=ready, xcom_value=day)

    @task(pool="duckdb")
    def validate(day: str, params=None) -> dict:
        """Read the day's snapshot, quarantine bad rows, stage Parquet (the ingest contract)."""
        from pipelines.orchestration import fail_without_retry_on_rejection
        from pipelines.recs import jobs

        return fail_without_retry_on_rejection(jobs.validate)(day, params["max_bad_share"])

    @task(pool="ml_training")
    def build(validated: dict, params=None) -> dict:
        """Fit the model (weighting, profile blend, SVD + HNSW index) and plan the user shards."""
        from pipelines.recs import jobs

        return jobs.build(validated["day"], jobs.model_params(params), params["shard_users"])

    @task
    def shards(built: dict) -> list[dict]:
        return built["shards"]

    @task(max_active_tis_per_dagrun=8, map_index_template="{{ shard_label }}")
    def recommend_shard(shard: dict) -> dict:
        """Neighbours and top-N unseen artists for one shard of users."""
        from airflow.sdk import get_current_context

        from pipelines.recs import jobs

        get_current_context()["shard_label"] = jobs.shard_label(shard)
        return jobs.recommend_shard(shard)

    @task(pool="dynamodb_writes", max_active_tis_per_dagrun=4, map_index_template="{{ shard_label }}")
    def write_shard(shard: dict) -> dict:
        """Batch-write one shard to DynamoDB under the new version (not yet visible)."""
        from airflow.sdk import get_current_context

        from pipelines.recs import jobs

        get_current_context()["shard_label"] = jobs.shard_label(shard)
        return jobs.write_shard(shard)

    @task(pool="publish")
    def publish(built: dict, written: list[dict], evaluated: dict, params=None) -> dict:
        """Cold-start lists, then the atomic switch of the served version (if it passes the quality gate)."""
        from pipelines.recs import jobs

        return jobs.publish(built["version"], list(written), evaluated, params["quality_tolerance"])

    @task(pool="duckdb")
    def evaluate(validated: dict, params=None) -> dict:
        """Held-out metrics of this configuration beside the baselines and the oracle."""
        from pipelines.recs import jobs

        if not params["eval_users"]:
            return {"skipped": True, "reason": "eval_users = 0"}
        return jobs.evaluate(validated["day"], jobs.model_params(params), params["eval_users"])

    @task(pool="publish")
    def cleanup(published: dict, params=None) -> dict:
        """Delete versions older than the ones kept for rollback, and staged snapshots past retention."""
        from pipelines.recs import jobs

        return jobs.cleanup(params["keep_versions"])

    validated = validate(wait_for_snapshot(begin()))
    built = build(validated)
    written = write_shard.expand(shard=recommend_shard.expand(shard=shards(built)))
    cleanup(publish(built, written, evaluate(validated)))


recs_daily()

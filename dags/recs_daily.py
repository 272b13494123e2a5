"""
### User-user recommendations, daily, to DynamoDB

Reads the day's Last.fm-360K-format snapshot (`recs/raw/dt=YYYY-MM-DD/usersha1-artmbid-artname-plays.tsv` and
`usersha1-profile.tsv` in the data root), validates it (bad rows to the `quarantine` table), fits the user-user
model, computes every user's top-N unseen artists in shards (dynamic task mapping: each shard is its own task,
so Celery or Kubernetes workers share them), writes them to DynamoDB under a new version, and publishes that
version with one conditional write of the version pointer: the API switches from the previous complete version
to the new complete one at once. A held-out evaluation against popularity, popularity by country, item-item CF
and (on generated data) the planted-truth oracle runs beside the shards; its metrics go to the run registry.

**Which day a run processes**: `CronDataIntervalTimetable` at 02:00 UTC, so the run with logical date D covers
[D 02:00, D+1 02:00) and starts once it is over; it reads the snapshot dated D (exported during day D).

**Rerun / backfill**: a version is `YYYYMMDD-<hash of the Params>`, so rerunning a day rewrites the same items
with the same content. A backfilled day older than the live version is computed and evaluated but neither
written nor published: the served recommendations never go back in time. Runs are serialised
(`max_active_runs=1`) so cleanup never races a publish.

**Failures**: a missing snapshot fails `validate` with retries; more bad rows than `max_bad_share` fails at
once; a shard or write failure retries just that shard; `publish` refuses to switch unless every shard landed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

DEFAULT_ARGS = {
    "owner": "recommendations",
    "retries": 2,
    "retry_delay": pendulum.duration(minutes=5),
    "retry_exponential_backoff": True,
}


@dag(
    dag_id="recs_daily",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),  # early, so historical days can be backfilled
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recommendations", "dynamodb"],
    doc_md=__doc__,
    params={
        "k_neighbours": Param(100, type="integer", minimum=1, maximum=1000, description="Neighbours per user."),
        "n_recs": Param(10, type="integer", minimum=1, maximum=100, description="Artists recommended per user."),
        "weighting": Param("bm25", enum=["bm25", "log", "tfidf", "none"], description="Play count weighting."),
        "profile_weight": Param(0.1, type="number", minimum=0, maximum=0.99,
                                description="Share of the similarity given to gender, age band and country."),
        "min_history": Param(3, type="integer", minimum=1,
                             description="Users with fewer artists get the cold-start list."),
        "neighbours": Param("approx", enum=["approx", "exact"],
                            description="approx: SVD + HNSW (minutes); exact: blockwise cosine (O(users²))."),
        "svd_dim": Param(64, type="integer", minimum=2, maximum=1024),
        "shard_users": Param(50000, type="integer", minimum=100, description="Users per mapped shard task."),
        "eval_users": Param(5000, type="integer", minimum=0, description="Held-out users evaluated (0 = skip)."),
        "keep_versions": Param(2, type="integer", minimum=1, description="Versions kept for rollback."),
        "max_bad_share": Param(0.05, type="number", minimum=0, maximum=1,
                               description="Fail the day when more than this share of rows is bad."),
    },
)
def recs_daily():
    @task
    def validate(data_interval_start=None, params=None) -> dict:
        """Read the day's snapshot, quarantine bad rows, stage Parquet."""
        from pipelines.orchestration import fail_without_retry_on_rejection
        from pipelines.recs import jobs

        return fail_without_retry_on_rejection(jobs.validate)(data_interval_start.date(), params["max_bad_share"])

    @task
    def build(validated: dict, params=None) -> dict:
        """Fit the model (weighting, profile blend, SVD + HNSW index) and plan the user shards."""
        from pipelines.recs import jobs

        return jobs.build(validated["day"], dict(params), params["shard_users"])

    @task
    def shards(built: dict) -> list[dict]:
        return built["shards"]

    @task(max_active_tis_per_dagrun=8)
    def recommend_shard(shard: dict) -> dict:
        """Neighbours and top-N unseen artists for one shard of users."""
        from pipelines.recs import jobs

        return jobs.recommend_shard(shard)

    @task(max_active_tis_per_dagrun=4)
    def write_shard(shard: dict) -> dict:
        """Batch-write one shard to DynamoDB under the new version (not yet visible)."""
        from pipelines.recs import jobs

        return jobs.write_shard(shard)

    @task
    def publish(built: dict, written: list[dict]) -> dict:
        """Cold-start lists, then the atomic switch of the served version."""
        from pipelines.recs import jobs

        return jobs.publish(built["version"], list(written))

    @task
    def evaluate(validated: dict, params=None) -> dict:
        """Held-out metrics of this configuration beside the baselines and the oracle."""
        from pipelines.recs import jobs

        if not params["eval_users"]:
            return {"skipped": True}
        return jobs.evaluate(validated["day"], dict(params), params["eval_users"])

    @task
    def cleanup(published: dict, params=None) -> dict:
        """Delete versions older than the ones kept for rollback."""
        from pipelines.recs import jobs

        return jobs.cleanup(params["keep_versions"])

    validated = validate()
    built = build(validated)
    written = write_shard.expand(shard=recommend_shard.expand(shard=shards(built)))
    cleanup(publish(built, written))
    evaluate(validated)


recs_daily()

"""
### Cantonese article tagging: weekly training

Validates the labelled corpus (`tagging/raw/corpus/` in the data root; bad rows to the `quarantine` table,
partition `corpus`), segments it into words with pycantonese (cached per article content hash, so only new
articles are segmented), measures the segmenter against HKCanCor's gold words, then trains every model named in
`models` on every feature view in `views` (pycantonese words, character n-grams, both): the seed's
CountVectorizer + RandomForest with GridSearchCV over the `grid`, TF-IDF + logistic regression / linear SVM,
CatBoost with text features, and the majority baseline. Each model gets a stratified, seeded `cv_folds`-fold CV
and one score on a held-out split no step has seen; on generated data the oracle (the clean tags) is the ceiling
beside them. One registry run per model; the report (tables, PNG charts, misclassified articles) is under
`tagging/models/<version>/report/`.

**Which day**: the run with logical date D covers [D 04:00, D+7 04:00) and trains as of D+6 (or the `day`
Param): the day only names the version `YYYYMMDD-<hash of Params, corpus run and feature definition>`.

**Reproducible**: the same corpus and Params give the same metrics (fixed seeds, one thread per model).

**Promotion is explicit**: `promote` = '' promotes nothing; a model name promotes that model of this run;
`best` promotes this run's best held-out macro F1. Or later: `python -m pipelines tagging promote --model
<name>`. The daily DAG tags with the promoted model.

**Failures**: a missing corpus is waited for (`wait_for_corpus`, reschedule mode); a corpus with more bad rows
than `max_bad_share` or an unreadable file fails `validate_corpus` without retry and nothing is trained.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, PokeReturnValue, dag, task

from pipelines.dagkit import SENSOR, day_param, default_args, overrun_alert, share_param

# Kept equal to pipelines.tagging.schema / models.families by tests/unit/test_tagging_dags.py (DAG files import
# nothing heavy at parse time, so the lists are written out here).
FAMILIES = ["majority", "seed_rf", "tfidf_lr", "tfidf_svm", "catboost"]
VIEWS = ["words", "chars", "both", "char1"]
DEFAULT_VIEWS = ["words", "chars", "both"]
MODEL_NAMES = ["majority"] + [f"{f}_{v}" for f in FAMILIES[1:] for v in VIEWS]
DEFAULT_GRID = {
    "seed_rf": {"vectorizer__min_df": [1, 2], "forest__n_estimators": [100, 300],
                "forest__max_features": ["sqrt", 0.05]},
    "tfidf_lr": {"clf__estimator__C": [1.0, 10.0, 100.0]},
    "tfidf_svm": {"clf__estimator__C": [0.1, 1.0]},
}


@dag(
    dag_id="tagging_train_weekly",
    schedule=CronDataIntervalTimetable("0 4 * * 1", timezone="UTC"),
    start_date=pendulum.datetime(2000, 1, 3, tz="UTC"),  # early, so historical weeks can be backfilled
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=12),
    deadline=overrun_alert(pendulum.duration(hours=6)),
    default_args=default_args("tagging", retries=1, retry_minutes=30, timeout_minutes=240),
    tags=["tagging", "training"],
    doc_md=__doc__,
    params={
        "day": day_param(),
        "models": Param(FAMILIES, type="array", items={"type": "string", "enum": FAMILIES},
                        description="Model families to train and compare (the majority baseline is one)."),
        "views": Param(DEFAULT_VIEWS, type="array", items={"type": "string", "enum": VIEWS},
                       description="Feature views: words (pycantonese), chars (character 1-3-grams), both, char1 "
                                   "(single characters)."),
        "grid": Param(DEFAULT_GRID, type="object",
                      description="GridSearchCV grids per family: {family: {parameter: [values]}}; a single value "
                                  "fixes a parameter without searching."),
        "cv_folds": Param(5, type="integer", minimum=2, maximum=10, description="Stratified, seeded CV folds."),
        "holdout_share": Param(0.2, type="number", minimum=0.05, maximum=0.5,
                               description="Share of articles held out for the final comparison."),
        "seed": Param(42, type="integer", minimum=0, maximum=2**31 - 1),
        "threshold": Param(0.5, type="number", exclusiveMinimum=0, exclusiveMaximum=1,
                           description="A tag is assigned at this probability (the most probable one always)."),
        "catboost_iterations": Param(300, type="integer", minimum=10, maximum=20000),
        "promote": Param("", type="string", enum=["", "best", *MODEL_NAMES],
                         description="'' = promote nothing; 'best' = this run's best held-out macro F1; or a model."),
        "max_bad_share": share_param(what="corpus rows"),
    },
)
def tagging_train_weekly():
    @task
    def begin(params=None, dag_run=None, data_interval_end=None, dag=None) -> str:
        """Check the run's conf and say as of which day it trains."""
        from pipelines.orchestration import begin

        return begin(params, dag_run, data_interval_end, interval_hour=4, dag=dag)

    @task.sensor(**SENSOR)
    def wait_for_corpus(day: str) -> PokeReturnValue:
        """Wait (rescheduled, no slot held) until the corpus folder has a file."""
        from pipelines.tagging import jobs

        return PokeReturnValue(is_done=jobs.corpus_ready(), xcom_value=day)

    @task(pool="duckdb")
    def validate_corpus(day: str, params=None) -> str:
        """Check the training Params (a bad grid fails here, before any work); read every corpus file,
        quarantine bad rows, stage the valid articles (the ingest contract)."""
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.errors import UsageError
        from pipelines.orchestration import fail_without_retry_on_rejection
        from pipelines.tagging import jobs

        try:
            fail_without_retry_on_rejection(jobs.validate_corpus)(params["max_bad_share"], dict(params))
        except UsageError as exc:  # nonsense Params: retrying cannot help
            raise AirflowFailException(str(exc)) from exc
        return day

    @task(pool="ml_training")
    def segment_corpus(day: str) -> str:
        """Segment the articles the cache has not seen (in parallel chunks when it pays)."""
        from pipelines.tagging import jobs

        jobs.segment("corpus")
        return day

    @task
    def segmentation_quality(day: str) -> str:
        """pycantonese against HKCanCor's gold words, beside honest baselines; recorded and reported."""
        from pipelines.tagging import jobs

        jobs.segmentation_quality()
        return day

    @task(pool="ml_training")
    def train(day: str, params=None) -> dict:
        """Every model on every view: grid search, CV, held-out score, one registry run each. Promotes nothing."""
        from pipelines.tagging import jobs

        return jobs.train_weekly(day, dict(params))

    @task
    def promote(trained: dict, params=None) -> dict:
        """Promote what the `promote` Param names (of this run), or nothing."""
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.errors import UsageError
        from pipelines.tagging import jobs

        try:
            return jobs.promote_trained(trained, params["promote"], by="tagging_train_weekly")
        except UsageError as exc:  # a model this run did not train: retrying cannot help
            raise AirflowFailException(str(exc)) from exc

    promote(train(segmentation_quality(segment_corpus(validate_corpus(wait_for_corpus(begin()))))))


tagging_train_weekly()

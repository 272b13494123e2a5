"""What the operations page knows about each pipeline: its DAGs, how its models are compared, its serving tables.

The registry (``runs``, ``run_metrics``) is generic; this small catalogue adds what it cannot say: which metric
ranks a pipeline's models (and in which direction), which DAG trains it (the Trigger form is the training
page), and where its predictions are served from. Pipelines still being built may change their tables, so
everything here is read defensively: a table that does not exist (yet) is skipped, and a pipeline that only
appears in the registry is shown with generic defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: What an identifier from a URL must look like before it is compared with anything (pipeline, model names).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@=+-]{0,127}$")


@dataclass(frozen=True)
class ServingTable:
    """A table of predictions (or a pipeline's serving output) the page previews, searches and exports.

    ``key`` is the column people search by (a user, article or post id) and ``key_type`` how a searched value
    is validated (``text``, ``bigint`` or ``date``). ``order`` lists the columns the preview and the export
    are ordered by (a unique key, so pages and exports are stable).
    """

    table: str
    key: str
    key_type: str
    label: str
    order: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class PipelineInfo:
    """One pipeline as the page shows it."""

    name: str
    title: str
    dags: tuple[str, ...] = ()
    train_dag: str | None = None
    #: The metric that ranks its models, on held-out data, and its direction.
    metric: str | None = None
    higher_is_better: bool = True
    #: Against what a new version is checked: ``promoted`` (the promoted run of the same model) or
    #: ``previous`` (its previous successful run, for pipelines that serve every day without promotion).
    compare_with: str = "promoted"
    #: Run parameters that group runs into one training (default: the model version) and name a run's model
    #: (default: the model name), when a pipeline records them differently.
    training_param: str | None = None
    model_param: str | None = None
    tables: tuple[ServingTable, ...] = ()
    serving_note: str = ""
    promote_hint: str = ""
    kinds: tuple[str, ...] = field(default=("train", "evaluate"))

    def promote_command(self, model_name: str, run_id: str) -> str:
        return (f"python -m pipelines registry promote --pipeline {self.name} --model-name {model_name} "
                f"--run-id {run_id}")


CATALOG: dict[str, PipelineInfo] = {p.name: p for p in (
    PipelineInfo(
        name="retention", title="Retention analytics", dags=("retention_daily",),
        tables=(ServingTable("cohort_retention", "install_date", "date", "install day", ("install_date",),
                             "D1/D7/D30 retention per install cohort (NULL while a window is not fully loaded)"),
                ServingTable("daily_event_stats", "day", "date", "day", ("day",),
                             "events, active, new and returning users per day")),
        serving_note="Analytics tables, no model: nothing to promote."),
    PipelineInfo(
        name="recs", title="User-user recommendations", dags=("recs_daily",), metric="ndcg_at_10",
        compare_with="previous",
        serving_note="Recommendations are served from DynamoDB (table PIPELINES_RECS_TABLE) through the "
                     "recommendations API; every day's version is published by recs_daily once its evaluation "
                     "passes the quality gate, so a new version is compared with the previous one."),
    PipelineInfo(
        name="sociodemo", title="Socio-demographic prediction", dags=("sociodemo_daily", "sociodemo_train_weekly"),
        train_dag="sociodemo_train_weekly", metric="contest_score",
        tables=(ServingTable("sociodemo_predictions", "user_id", "text", "user id", ("user_id",),
                             "latest predicted sex and age class per user"),),
        promote_hint="or trigger sociodemo_train_weekly with the promote Param"),
    PipelineInfo(
        name="keystrokes", title="Keystroke user identification",
        dags=("keystrokes_analyse", "keystrokes_train", "keystrokes_predict"), train_dag="keystrokes_train",
        metric="accuracy", training_param="training_id", model_param="type",
        tables=(ServingTable("keystrokes_predictions", "user_label", "text", "user",
                             ("test_partition", "model_name", "model_version", "position"),
                             "top-1 user (and top 3) per attempt of each test dataset"),),
        promote_hint="or trigger keystrokes_train with the promote Param"),
    PipelineInfo(
        name="tagging", title="Cantonese article tagging", dags=("tagging_daily", "tagging_train_weekly"),
        train_dag="tagging_train_weekly", metric="macro_f1",
        tables=(ServingTable("tagging_article_tags", "article_id", "text", "article id", ("article_id", "tag"),
                             "current tags of every article"),),
        promote_hint="or trigger tagging_train_weekly with the promote Param"),
    PipelineInfo(
        name="engagement", title="Engagement regression", dags=("engagement_daily", "engagement_train_weekly"),
        train_dag="engagement_train_weekly", metric="rmse_log1p", higher_is_better=False,
        tables=(ServingTable("engagement_predictions", "post_id", "bigint", "post id", ("post_id",),
                             "latest predicted up-votes per post"),),
        promote_hint="or trigger engagement_train_weekly with the promote Param"),
)}


def info(pipeline: str) -> PipelineInfo:
    """The catalogue entry of a pipeline, or generic defaults for one only the registry knows."""
    return CATALOG.get(pipeline) or PipelineInfo(name=pipeline, title=pipeline)


def pipeline_of_dag(dag_id: str | None) -> str | None:
    """Which pipeline a DAG belongs to: the catalogue's, else the DAG id's prefix (``<pipeline>_...``)."""
    if not dag_id:
        return None
    for item in CATALOG.values():
        if dag_id in item.dags:
            return item.name
    prefix = dag_id.split("_", 1)[0]
    return prefix if prefix in CATALOG else None


def valid_name(text: str | None) -> bool:
    """Whether a name from a URL (pipeline, model, version, reason) is well-formed (never a SQL fragment)."""
    return bool(text) and NAME_RE.match(text) is not None

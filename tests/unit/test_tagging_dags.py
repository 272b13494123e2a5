"""The tagging DAG files: their hand-written lists (DAG files import nothing heavy) equal the package's, and
their graphs and Params are what the docs say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pipelines.tagging import schema
from pipelines.tagging.models.families import DEFAULT_GRID

DAGS = Path(__file__).resolve().parents[2] / "dags"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"dag_{name}", DAGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def weekly():
    return _module("tagging_train_weekly")


@pytest.fixture(scope="module")
def daily():
    return _module("tagging_daily")


def test_lists_match_the_package(weekly, daily):
    assert list(schema.FAMILIES) == weekly.FAMILIES
    assert list(schema.VIEWS) == weekly.VIEWS and list(schema.DEFAULT_VIEWS) == weekly.DEFAULT_VIEWS
    assert weekly.MODEL_NAMES == schema.model_names() == daily.MODEL_NAMES
    assert weekly.DEFAULT_GRID == DEFAULT_GRID


def test_weekly_graph_and_params(weekly):
    dag = weekly.tagging_train_weekly()
    assert {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks} == {
        "begin": ["wait_for_corpus"], "wait_for_corpus": ["validate_corpus"], "validate_corpus": ["segment_corpus"],
        "segment_corpus": ["segmentation_quality"], "segmentation_quality": ["train"], "train": ["promote"],
        "promote": []}
    assert dag.params["promote"] == ""  # nothing is promoted unless asked
    assert {"day", "models", "views", "grid", "cv_folds", "holdout_share", "seed", "threshold", "catboost_iterations",
            "promote", "max_bad_share"} == set(dag.params.keys())
    assert dag.get_task("train").pool == "ml_training"


def test_daily_graph_and_params(daily):
    dag = daily.tagging_daily()
    assert {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks} == {
        "begin": ["wait_for_drop"], "wait_for_drop": ["validate"], "validate": ["segment"], "segment": ["tag"],
        "tag": ["cleanup"], "cleanup": []}
    assert dag.get_task("cleanup").trigger_rule == "none_failed"  # runs when tagging was skipped (no model yet)
    assert set(dag.params.keys()) == {"day", "max_bad_share", "model_name"}
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"

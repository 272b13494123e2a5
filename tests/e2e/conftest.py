"""Fixtures shared by the ``dag.test()`` end-to-end tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    """Every DAG of ``dags/``, parsed once per module, ready for ``dag.test()`` (deadline alerts removed: they do
    not mix in Airflow 3.3.2, see :func:`pipelines.dagkit.without_deadlines`)."""
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.dagkit import without_deadlines
    from tests.conftest import REPO

    bag = DagBag(str(REPO / "dags"))
    assert bag.import_errors == {}
    without_deadlines(bag.dags)
    return bag

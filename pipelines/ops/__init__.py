"""Operations: what ops people watch the platform through, inside the Airflow UI.

* :mod:`~pipelines.ops.catalog`: what the page knows about each pipeline (its DAGs, primary metric, serving
  tables), read defensively: a pipeline whose tables do not exist yet is shown without them;
* :mod:`~pipelines.ops.queries`: the page's read-only, parameterised SQL (versions, comparisons, data quality,
  quarantine, predictions, alerts) and the CSV export streamed from PostgreSQL;
* :mod:`~pipelines.ops.report`: one self-contained HTML report per training or evaluation run;
* :mod:`~pipelines.ops.alerts`, :mod:`~pipelines.ops.targets`, :mod:`~pipelines.ops.notify`: the ``alerts``
  table, where alerts are sent (webhook, e-mail) and the Airflow notifier/deadline callbacks;
* :mod:`~pipelines.ops.web`: the FastAPI app the Airflow plugin (``plugins/pipelines_ops.py``) mounts.

This package's ``__init__`` and :mod:`~pipelines.ops.notify` are imported when DAG files are parsed (the
failure callback sits in every DAG's ``default_args``): keep them free of anything heavier than ``airflow.sdk``.
"""

"""The operations page inside the Airflow UI: a FastAPI app served by Airflow's own API server, and a
navigation entry ("Pipelines") that shows it in the UI's frame.

Every Airflow component imports the plugins folder (a task does, for macros), so this module stays light: the
app is built on first use, which only Airflow's API server asks for. The app protects every route with Airflow's
own security dependencies (Airflow does not authenticate plugin apps) and only reads; see
``pipelines/ops/web/app.py`` for its pages and ``docs/drafts/ops_readme.md`` for how to reach it.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/pipelines-ops"  # pipelines.ops.config.URL_PREFIX


class PipelinesOpsPlugin(AirflowPlugin):
    name = "pipelines_ops"
    external_views: ClassVar[list[dict[str, Any]]] = [{
        "name": "Pipelines",
        "href": URL_PREFIX.lstrip("/") + "/",  # relative: resolved against the UI's base URL
        "destination": "nav",
        "url_route": "pipelines",
        "category": None,
    }]

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from pipelines.ops.web.app import create_app

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Pipelines operations"}]

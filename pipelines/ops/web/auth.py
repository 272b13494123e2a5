"""Who may see what: Airflow's own authentication and authorization, applied to every route of the page.

Airflow mounts a plugin's FastAPI app without authenticating it, so the app depends on Airflow's security
dependency (:data:`airflow.api_fastapi.core_api.security.GetUserDep`: the JWT of the ``Authorization`` header,
else the UI's ``_token`` cookie) for every route: an anonymous request gets 401, a user the auth manager does
not let see the UI gets 403. Inside, data is scoped per pipeline by the user's DAG permissions: a pipeline is
visible to whoever may read at least one of its DAGs, and invisible (404, like one that does not exist) to
anyone else. The auth manager decides (SimpleAuthManager roles, FAB permissions, Keycloak, ...), never this app.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import HTTPException, status

log = logging.getLogger(__name__)


@dataclass
class Viewer:
    """The authenticated user of one request, with memoised DAG read permissions."""

    user: Any
    manager: Any
    _dags: dict[str, bool] = field(default_factory=dict)

    @property
    def name(self) -> str:
        try:
            return str(self.user.get_name())
        except Exception:
            return str(getattr(self.user, "username", "user"))

    def can_read_dag(self, dag_id: str) -> bool:
        if dag_id not in self._dags:
            from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

            self._dags[dag_id] = bool(self.manager.is_authorized_dag(
                method="GET", access_entity=DagAccessEntity.RUN,
                details=DagDetails(id=dag_id, team_name=_team_of(dag_id)), user=self.user))
        return self._dags[dag_id]

    def can_see(self, dags: Iterable[str]) -> bool:
        """A pipeline with DAGs is visible to readers of any of them; one without (runs from the command
        line only) to anyone allowed into the page."""
        dags = list(dags)
        return not dags or any(self.can_read_dag(d) for d in dags)


def _team_of(dag_id: str) -> str | None:
    try:
        from airflow.configuration import conf

        if not conf.getboolean("core", "multi_team", fallback=False):
            return None
        from airflow.models.dag import DagModel

        return DagModel.get_team_name(dag_id)
    except Exception:  # no team lookup possible: authorise without a team (the stricter check for teams)
        return None


def _authorize(user: Any) -> Viewer:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView

    manager = get_auth_manager()
    if not manager.is_authorized_view(access_view=AccessView.WEBSITE, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden: your Airflow role does not include the UI")
    return Viewer(user=user, manager=manager)


def current_viewer(user: GetUserDep) -> Viewer:
    """The dependency every route of the app carries: Airflow's ``get_user`` (401 without a valid token),
    then the auth manager's UI check (403)."""
    return _authorize(user)

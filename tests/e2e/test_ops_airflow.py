"""The operations page and the alerts inside a real Airflow: an API server (with the plugin), a scheduler, a DAG
processor and a triggerer as separate processes, metadata in PostgreSQL, SimpleAuthManager with users (not
all-admins). The pipelines' database holds a seeded history (``tests/e2e/test_ops_seed.py``); a local HTTP
receiver stands in for the alert webhook.

* the plugin loads and its endpoints answer with data from PostgreSQL; an anonymous request is refused (401),
  a user without a role sees nothing (403);
* a task that fails for good (retries exhausted) gives exactly one ``alerts`` row and one webhook call;
* a DAG run past its expected time gives one ``dag_overrun`` alert, from Airflow's deadline alert (triggerer);
* a headless Chromium (Debian's, driven by Playwright) logs in, opens the page inside the Airflow UI, checks
  the comparison table and the chart are shown, and saves a screenshot.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines import db
from tests.e2e.cluster import REPO, AirflowCluster
from tests.e2e.test_ops_seed import TRAININGS, WebhookReceiver, drop_database, scratch_database, seed_platform

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
TEST_DAGS = '''
"""DAGs of the operations tests: a task that always fails, and a run that overruns its expected time."""

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from pipelines.dagkit import default_args, overrun_alert


@dag(dag_id="ops_failing", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["ops-test"], default_args=default_args("ops-tests", retries=1, retry_minutes=0.02, timeout_minutes=5))
def ops_failing():
    @task
    def explode() -> None:
        raise ValueError("planted failure for the alert test")

    explode()


ops_failing()


@dag(dag_id="ops_slow", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["ops-test"], deadline=overrun_alert(timedelta(seconds=5)),
     default_args=default_args("ops-tests", retries=0, timeout_minutes=5))
def ops_slow():
    @task
    def linger() -> None:
        import time

        time.sleep(30)

    linger()


ops_slow()
'''


@dataclass
class OpsCluster(AirflowCluster):
    """The shared test cluster with this module's DAGs, users instead of all-admins, and a triggerer."""

    dags: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        env.update({
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,ops:viewer,nobody:",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        })
        return env

    def start(self, dag_ids: list[str], timeout: float = 300) -> OpsCluster:
        super().start(dag_ids, timeout)
        self._spawn("triggerer", [sys.executable, "-m", "airflow", "triggerer"])
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def password(self, user: str) -> str:
        return json.loads((self.home / "passwords.json").read_text())[user]

    def token(self, user: str) -> str:
        request = urllib.request.Request(f"{self.url}/auth/token", method="POST",
                                         data=json.dumps({"username": user, "password": self.password(user)}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())["access_token"]

    def get(self, path: str, token: str | None = None) -> tuple[int, bytes, dict]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers), timeout=60) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)


@pytest.fixture(scope="module")
def hook():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def cluster(pg_admin_dsn, tmp_path_factory, hook):
    from pipelines.settings import get_settings

    work = tmp_path_factory.mktemp("ops-airflow")
    dags = work / "dags"
    dags.mkdir()
    (dags / "ops_test_dags.py").write_text(TEST_DAGS)
    pipelines_db, metadata_db = f"ubm_ops_{uuid.uuid4().hex[:10]}", f"airflow_ops_{uuid.uuid4().hex[:10]}"
    dsn = scratch_database(pg_admin_dsn, pipelines_db)
    metadata = scratch_database(pg_admin_dsn, metadata_db).replace("postgresql://", "postgresql+psycopg2://", 1)
    env = {"PIPELINES_PG_DSN": dsn, "PIPELINES_DATA_ROOT": str(work / "data"), "PIPELINES_HOME": str(work / "home")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("PIPELINES_ALERT_WEBHOOK_URL", raising=False)
        get_settings.cache_clear()
        seeded = seed_platform()  # before the webhook is configured: its two alerts are recorded only
        ops = OpsCluster(home=work / "airflow", metadata_url=metadata, dags=dags,
                         pipelines_env={**env, "PIPELINES_ALERT_WEBHOOK_URL": hook.url})
        ops.home.mkdir()
        try:
            ops.start(["ops_failing", "ops_slow"])
            ops.seeded = seeded  # type: ignore[attr-defined]
            yield ops
        finally:
            ops.stop()
            get_settings.cache_clear()
            drop_database(pg_admin_dsn, pipelines_db)
            drop_database(pg_admin_dsn, metadata_db)


def test_the_plugin_loads_and_answers_with_postgres_data(cluster):
    viewer = cluster.token("ops")
    status, body, _ = cluster.get("/api/v2/plugins", viewer)
    assert status == 200
    plugin = next(p for p in json.loads(body)["plugins"] if p["name"] == "pipelines_ops")
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/pipelines-ops"
    assert plugin["external_views"][0]["url_route"] == "pipelines"
    status, body, _ = cluster.get("/pipelines-ops/api/pipelines/sociodemo/versions", viewer)
    assert status == 200
    versions = json.loads(body)["versions"]
    assert {v["model_version"] for v in versions} == set(TRAININGS)
    assert {v["run_id"] for v in versions} == {r for t in cluster.seeded["trainings"].values() for r in t.values()}
    status, body, _ = cluster.get("/pipelines-ops/pipelines/sociodemo", viewer)
    assert status == 200 and b'id="comparison-table"' in body


def test_anonymous_and_role_less_requests_are_refused(cluster):
    for path in ("/pipelines-ops/", "/pipelines-ops/api/pipelines", "/pipelines-ops/pipelines/sociodemo",
                 "/pipelines-ops/pipelines/sociodemo/predictions/sociodemo_predictions.csv",
                 f"/pipelines-ops/runs/{cluster.seeded['engagement_run']}/report", "/pipelines-ops/static/ops.css"):
        status, body, _ = cluster.get(path)
        assert status == 401, (path, body[:200])
        status, body, _ = cluster.get(path, cluster.token("nobody"))
        assert status == 403, (path, body[:200])
        assert b"catboost" not in body and b"contest_score" not in body


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    raise TimeoutError(f"{what} within {timeout}s")


def test_a_failing_task_gives_one_alert_and_one_notification(cluster, hook):
    run_id = cluster.trigger("ops_failing")
    runs = cluster.wait_runs("ops_failing", 1, timeout=300)
    assert runs[0]["state"] == "failed"
    tries = [ti["try_number"] for ti in cluster.task_instances("ops_failing") if ti["run_id"] == run_id]
    assert tries == [2]  # the retry ran: the alert is about retries exhausted
    rows = _wait(lambda: db.query("SELECT * FROM alerts WHERE dag_id = 'ops_failing'"), 60, "the alert row")
    time.sleep(5)  # a second row or call would arrive by now
    rows = db.query("SELECT * FROM alerts WHERE dag_id = 'ops_failing'")
    calls = [c for c in hook.calls if c["body"]["alert"]["dag_id"] == "ops_failing"]
    assert len(rows) == 1 and len(calls) == 1
    row = rows[0]
    assert (row["kind"], row["task_id"], row["run_id"], row["try_number"]) == ("retries_exhausted", "explode",
                                                                                run_id, 2)
    assert row["notified_ok"] is True and row["notify_targets"][0].startswith("webhook http://127.0.0.1:")
    text = calls[0]["body"]["text"]
    assert f"{cluster.url}/dags/ops_failing/runs/" in text and "tasks/explode" in text  # the log link
    assert "ValueError: planted failure for the alert test" in text and "retries exhausted" in text
    status, body, _ = cluster.get("/pipelines-ops/api/alerts", cluster.token("ops"))
    assert status == 200
    assert any(a["dag_id"] == "ops_failing" and a["kind"] == "retries_exhausted" for a in json.loads(body)["alerts"])


def test_a_run_past_its_expected_time_alerts_through_the_deadline(cluster, hook):
    run_id = cluster.trigger("ops_slow")
    rows = _wait(lambda: db.query("SELECT * FROM alerts WHERE kind = 'dag_overrun' AND dag_id = 'ops_slow' "
                                  "AND notified_ok IS NOT NULL"), 120,
                 "the overrun alert, sent (Airflow deadline → triggerer → on_dag_overrun)")
    assert len(rows) == 1 and rows[0]["run_id"] == run_id and rows[0]["details"]["expected_s"] == 5
    assert rows[0]["notified_ok"] is True
    assert [c["body"]["alert"]["run_id"] for c in hook.calls if c["body"]["alert"]["kind"] == "dag_overrun"] == [run_id]
    time.sleep(5)
    assert cluster.processes["triggerer"].poll() is None  # the callback's result was stored; the triggerer lives on
    runs = cluster.wait_runs("ops_slow", 1, timeout=300)
    assert runs[0]["state"] == "success"  # an overrun warns; dagrun_timeout is what stops a run
    assert len(db.query("SELECT * FROM alerts WHERE kind = 'dag_overrun'")) == 1


def test_the_page_in_a_browser_inside_the_airflow_ui(cluster, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get update && apt-get install -y chromium "
                    "chromium-driver)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{cluster.url}/")
            page.wait_for_url("**/auth/login**", timeout=60_000)
            page.fill("input[name=username]", "ops")
            page.fill("input[name=password]", cluster.password("ops"))
            page.keyboard.press("Enter")
            page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)
            page.goto(f"{cluster.url}/plugin/pipelines")
            frame = page.wait_for_selector("iframe[src*='pipelines-ops']", timeout=60_000).content_frame()
            frame.wait_for_selector("text=Socio-demographic prediction", timeout=60_000)
            frame.click("nav.top >> text=sociodemo")
            frame.wait_for_selector("#comparison-table", timeout=60_000)
            rows = frame.locator("#comparison-table tr")
            assert rows.count() == 4  # header, topclass, catboost, oracle
            assert [rows.nth(i).locator("td").first.inner_text() for i in range(1, 4)] == ["topclass", "catboost",
                                                                                           "oracle"]
            chart = frame.locator("#comparison-chart svg")
            assert chart.is_visible() and chart.bounding_box()["width"] > 400
            assert frame.locator("#comparison-chart svg rect title").count() == 4  # 2 models × 2 trainings
            frame.locator("#comparison-chart").scroll_into_view_if_needed()
            shot = tmp_path / "ops_page.png"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
    shutil.copyfile(shot, REPO / "docs" / "ops_page.png")

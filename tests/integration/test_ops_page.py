"""The operations page's app, in process, behind Airflow's real authentication (SimpleAuthManager with users,
not all-admins; JWTs it issued itself), reading a real PostgreSQL written through the platform's own code paths
(``tests/e2e/test_ops_seed.py``): every endpoint answers with what the database holds, refuses the anonymous and
the role-less, scopes pipelines by DAG permission, validates its parameters, and exports exactly the table."""

from __future__ import annotations

import csv
import io
import uuid
import xml.etree.ElementTree as ET

import pytest

from pipelines import db
from tests.e2e.test_ops_seed import BAD, DAYS, ROWS, TRAININGS, USERS, expected_quarantine_rows, seed_platform

pytestmark = pytest.mark.integration

PREFIX = "/pipelines-ops"
PAGES = ["/", "/alerts", "/pipelines/sociodemo", "/pipelines/sociodemo/quality", "/pipelines/sociodemo/quarantine",
         "/pipelines/sociodemo/data", "/pipelines/sociodemo/predictions", "/static/ops.css",
         "/pipelines/sociodemo/predictions/sociodemo_predictions.csv", "/api/pipelines", "/api/alerts",
         "/api/pipelines/sociodemo/versions", "/api/pipelines/sociodemo/comparison", "/api/pipelines/sociodemo/quality",
         "/api/pipelines/sociodemo/quarantine", "/api/pipelines/sociodemo/data", "/api/pipelines/sociodemo/predictions"]


@pytest.fixture(scope="module")
def world(pg_dsn_module, tmp_path_factory, airflow_db):
    from pipelines.settings import get_settings

    root = tmp_path_factory.mktemp("ops-page") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINES_DATA_ROOT", str(root))
        for var in ("PIPELINES_ALERT_WEBHOOK_URL", "PIPELINES_ALERT_SMTP_URL", "PIPELINES_ALERT_EMAIL_TO"):
            mp.delenv(var, raising=False)
        get_settings.cache_clear()
        seeded = seed_platform()
        yield seeded
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def manager(tmp_path_factory, airflow_db):
    """Airflow's SimpleAuthManager with users (not all-admins), and one more user ('scoped') who may read
    only ``sociodemo_daily``: what a deployment with per-DAG permissions (FAB, Keycloak) gives."""
    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    class ScopedManager(SimpleAuthManager):
        def is_authorized_dag(self, *, method, user, access_entity=None, details=None):
            if user.get_name() == "scoped":
                return method == "GET" and details is not None and details.id == "sociodemo_daily"
            return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "ops:viewer,scoped:viewer,nobody:")
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
                  str(tmp_path_factory.mktemp("auth") / "passwords.json"))
        mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "ops-page-tests-" + uuid.uuid4().hex * 2)
        saved = airflow_app._AuthManagerState.instance
        airflow_app._AuthManagerState.instance = ScopedManager()
        airflow_app._AuthManagerState.instance.init()
        try:
            yield airflow_app._AuthManagerState.instance
        finally:
            airflow_app._AuthManagerState.instance = saved


@pytest.fixture(scope="module")
def client(manager, world):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from pipelines.ops.web.app import create_app

    root = FastAPI()
    root.mount(PREFIX, create_app())
    return TestClient(root)


def _token(manager, name: str, role: str | None) -> dict:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return {"Authorization": f"Bearer {manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))}"}


@pytest.fixture(scope="module")
def ops(manager) -> dict:
    return _token(manager, "ops", "viewer")


def get(client, path: str, headers: dict, **kw):
    return client.get(PREFIX + path, headers=headers, **kw)


# ------------------------------------------------------------------------------------ authentication
@pytest.mark.parametrize("path", PAGES)
def test_an_anonymous_request_is_refused(client, path):
    response = client.get(PREFIX + path)
    assert response.status_code == 401, response.text
    forged = client.get(PREFIX + path, headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code in (401, 403)
    assert "sociodemo_predictions" not in response.text and "contest_score" not in response.text


def test_a_user_without_access_sees_nothing(client, manager):
    nobody = _token(manager, "nobody", "")
    for path in PAGES:
        response = get(client, path, nobody)
        assert response.status_code == 403, (path, response.text)
        assert "20260305" not in response.text and "catboost" not in response.text


def test_the_cookie_of_the_airflow_ui_is_accepted(client, manager):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    token = manager.generate_jwt(SimpleAuthManagerUser(username="ops", role="viewer"))
    client.cookies.set("_token", token)
    try:
        assert client.get(PREFIX + "/api/pipelines").status_code == 200
    finally:
        client.cookies.clear()


def test_pipelines_are_scoped_by_dag_permissions(client, manager, world):
    scoped = _token(manager, "scoped", "viewer")
    names = [p["name"] for p in get(client, "/api/pipelines", scoped).json()["pipelines"]]
    assert names == ["sociodemo"]
    assert get(client, "/pipelines/engagement", scoped).status_code == 404
    assert get(client, f"/runs/{world['engagement_run']}", scoped).status_code == 404
    assert get(client, f"/api/runs/{world['engagement_run']}", _token(manager, "ops", "viewer")).status_code == 200
    kinds = {a["pipeline"] for a in get(client, "/api/alerts", scoped).json()["alerts"]}
    assert kinds == {"sociodemo"}
    assert get(client, "/api/alerts?pipeline=engagement", scoped).status_code == 404
    html = get(client, "/", scoped).text
    assert "/pipelines/engagement" not in html and "/pipelines/sociodemo" in html


# ------------------------------------------------------------------------------------ data from PostgreSQL
def test_the_overview_answers_with_the_registry(client, ops, world):
    body = get(client, "/api/pipelines", ops).json()
    sociodemo = next(p for p in body["pipelines"] if p["name"] == "sociodemo")
    runs = db.query("SELECT count(*) AS n FROM runs WHERE pipeline = 'sociodemo'")[0]["n"]
    assert sociodemo["runs"]["runs"] == runs
    assert [(p["model_name"], p["model_version"]) for p in sociodemo["promoted"]] == [("catboost", "20260305-aaaa1111")]
    assert sociodemo["partitions"]["accepted"] == 5 and sociodemo["partitions"]["rejected"] == 1
    assert sociodemo["alerts_7d"] == 2  # the quarantine-share warning and the metric drop, raised by the hooks
    assert body["targets"] == {"targets": [], "error": None}
    html = get(client, "/", ops).text
    assert "catboost 20260305-aaaa1111" in html and "none configured" in html


def test_versions_carry_metrics_params_interval_and_promotion(client, ops, world):
    body = get(client, "/api/pipelines/sociodemo/versions", ops).json()
    expected = {run_id for runs in world["trainings"].values() for run_id in runs.values()}
    assert {v["run_id"] for v in body["versions"]} == expected
    promoted = world["trainings"]["20260305-aaaa1111"]["catboost"]
    for v in body["versions"]:
        assert v["metrics"]["contest_score"] == pytest.approx(TRAININGS[v["model_version"]][v["model_name"]])
        assert v["params"]["iterations"] == 60 and v["data_interval_start"].startswith("2026-03-0")
        assert v["promoted_as"] == (["production"] if v["run_id"] == promoted else None)
    html = get(client, "/pipelines/sociodemo", ops).text
    assert f"--model-name catboost --run-id {world['trainings']['20260307-bbbb2222']['catboost']}" in html
    assert f"--run-id {promoted}" not in html.split('id="versions-table"')[1]  # the promoted one needs no command
    assert "Open sociodemo_train_weekly → Trigger" in html and 'href="/dags/sociodemo_train_weekly"' in html


def test_versions_side_by_side_with_baselines_and_the_oracle(client, ops, world):
    body = get(client, "/api/pipelines/sociodemo/comparison", ops).json()
    assert body["metric"] == "contest_score" and body["higher_is_better"] is True
    assert [t["key"] for t in body["trainings"]] == list(TRAININGS)
    assert body["models"] == ["topclass", "catboost", "oracle"]
    for t in body["trainings"]:
        for model, value in TRAININGS[t["key"]].items():
            assert t["models"][model]["contest_score"] == pytest.approx(value)
    html = get(client, "/pipelines/sociodemo", ops).text
    table = html.split('id="comparison-table"')[1].split("</table>")[0]
    assert table.count("<tr") == 4 and "oracle" in table and "1.6" in table  # the latest training by default
    chart = html.split('id="comparison-chart">')[1].split("</svg>")[0] + "</svg>"
    svg = ET.fromstring(chart)
    titles = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert "20260305-aaaa1111 · catboost: 1.93" in titles and "20260307-bbbb2222 · oracle: 2.05" in titles
    other = get(client, "/api/pipelines/sociodemo/comparison?metric=sex_roc_auc&training=20260305-aaaa1111", ops)
    assert other.status_code == 200 and other.json()["metric"] == "sex_roc_auc"
    engagement = get(client, "/api/pipelines/engagement/comparison", ops).json()
    assert engagement["higher_is_better"] is False
    assert engagement["trainings"][0]["models"]["mean"]["rmse_log1p"] == 1.02


def test_data_quality_per_run_with_the_bad_days(client, ops, world):
    body = get(client, "/api/pipelines/sociodemo/quality", ops).json()
    runs = {r["partition_key"]: r for r in body["ingest_runs"]}
    assert set(runs) == {d.isoformat() for d in DAYS}
    for i, day in enumerate(DAYS):
        r = runs[day.isoformat()]
        assert (r["rows_read"], r["rows_valid"], r["rows_bad"]) == (ROWS, ROWS - BAD[i], BAD[i])
        assert r["rows_quarantined"] == BAD[i] + 5 and r["reasons"]["merged_duplicate"] == 5
        assert r["status"] == ("rejected" if i == 5 else "success")
    html = get(client, "/pipelines/sociodemo/quality", ops).text
    assert html.count('<span class="chip warn">warning</span>') == 1  # day 5 only (3% ≥ 2.5%)
    rows_chart = ET.fromstring(html.split('id="rows-chart">')[1].split("</svg>")[0] + "</svg>")
    flags = [t.text for t in rows_chart.iter("{http://www.w3.org/2000/svg}title") if t.text.endswith(
        ("warning", "rejected"))]
    assert flags == [f"{DAYS[4]}: warning", f"{DAYS[5]}: rejected"]


def test_the_quarantine_browser_pages_through_every_row(client, ops, world):
    total = db.query("SELECT count(*) AS n FROM quarantine WHERE pipeline = 'sociodemo'")[0]["n"]
    assert total == expected_quarantine_rows()
    seen, before = [], None
    while True:
        page = get(client, "/api/pipelines/sociodemo/quarantine", ops,
                   params={"limit": 7, **({"before": before} if before else {})}).json()
        seen += [r["id"] for r in page["rows"]]
        before = page["next_before"]
        if before is None:
            break
    assert len(seen) == total == len(set(seen)) and seen == sorted(seen, reverse=True)
    rows = get(client, "/api/pipelines/sociodemo/quarantine", ops,
               params={"reason": "missing_uid", "partition": DAYS[4].isoformat(), "limit": 500}).json()["rows"]
    assert len(rows) == 4 and {r["reason"] for r in rows} == {"missing_uid"}
    assert {r["partition_key"] for r in rows} == {DAYS[4].isoformat()}
    record = next(r for r in get(client, "/api/pipelines/sociodemo/quarantine", ops, params={"limit": 500}).json()[
        "rows"] if "bad" in (r["record"] or ""))
    assert "\x00" not in record["record"] and "\u2400" in record["record"]
    html = get(client, "/pipelines/sociodemo/quarantine?limit=3", ops).text
    assert html.count("<tr>") == 4 and "Older →" in html


def test_analyse_shows_the_first_rows_of_a_data_set(client, ops, world):
    import pyarrow.parquet as pq

    from pipelines.settings import get_settings

    body = get(client, "/api/pipelines/sociodemo/data", ops,
               params={"dataset": f"partition:{DAYS[1]}", "rows": 7}).json()
    assert f"partition:{DAYS[1]}" in [d["id"] for d in body["datasets"]]
    assert f"partition:{DAYS[5]}" not in [d["id"] for d in body["datasets"]]  # rejected: nothing staged to read
    assert body["files"] == ["events.parquet"] and body["preview"]["total"] == ROWS - BAD[1]
    staged = db.query("SELECT staged_uri FROM ingest_partitions WHERE partition_key = %s", (DAYS[1].isoformat(),))
    table = pq.read_table(f"{staged[0]['staged_uri']}/events.parquet").slice(0, 7).to_pylist()
    assert body["preview"]["rows"] == [[r["viewer_uid"], r["total_watchtime"], r["region"]] for r in table]
    assert [c[0] for c in body["preview"]["columns"]] == ["viewer_uid", "total_watchtime", "region"]
    assert get_settings().data_root not in str(body["preview"])  # rows, not paths of the server
    assert get(client, "/api/pipelines/sociodemo/data", ops, params={"rows": 1001}).status_code == 422
    assert get(client, "/api/pipelines/sociodemo/data", ops, params={"dataset": "../../etc"}).status_code == 422
    assert get(client, "/api/pipelines/sociodemo/data", ops,
               params={"dataset": f"partition:{DAYS[1]}", "file": "quarantine.parquet"}).status_code == 404
    html = get(client, "/pipelines/sociodemo/data?rows=1000", ops).text
    assert html.split('id="data-table"')[1].count("<tr>") == ROWS - BAD[4] + 1  # newest accepted day, header


def test_predictions_preview_search_and_types(client, ops, world):
    body = get(client, "/api/pipelines/sociodemo/predictions", ops, params={"rows": 5}).json()
    assert body["table"] == "sociodemo_predictions" and [r[0] for r in body["rows"]] == [f"{i:06d}" for i in range(5)]
    exact = get(client, "/api/pipelines/sociodemo/predictions", ops, params={"q": "000012"}).json()
    assert [r[0] for r in exact["rows"]] == ["000012"]
    prefix = get(client, "/api/pipelines/sociodemo/predictions", ops, params={"q": "0001", "rows": 1000}).json()
    assert [r[0] for r in prefix["rows"]] == [f"{i:06d}" for i in range(100, 200)]
    assert get(client, "/api/pipelines/sociodemo/predictions", ops, params={"q": "%"}).json()["rows"] == []
    assert get(client, "/api/pipelines/engagement/predictions", ops, params={"q": "12"}).json()["rows"] == []
    assert get(client, "/api/pipelines/engagement/predictions", ops, params={"q": "abc"}).status_code == 422
    assert get(client, "/api/pipelines/retention/predictions", ops,
               params={"table": "cohort_retention", "q": "2026-13-01"}).status_code == 422
    assert get(client, "/api/pipelines/sociodemo/predictions", ops, params={"table": "runs"}).status_code == 404
    assert get(client, "/api/pipelines/sociodemo/predictions", ops, params={"rows": 0}).status_code == 422
    html = get(client, "/pipelines/recs/predictions", ops).text
    assert "DynamoDB" in html and "no serving table in PostgreSQL" in html


def test_the_csv_export_equals_the_table(client, ops, world):
    with client.stream("GET", PREFIX + "/pipelines/sociodemo/predictions/sociodemo_predictions.csv",
                       headers=ops) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert response.headers["content-disposition"].startswith('attachment; filename="sociodemo_predictions-')
        text = b"".join(response.iter_bytes()).decode()
    rows = list(csv.reader(io.StringIO(text)))
    columns = [r["attname"] for r in db.query(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'sociodemo_predictions'::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum")]
    assert rows[0] == columns
    table = db.query("SELECT * FROM sociodemo_predictions ORDER BY user_id")
    assert len(rows) - 1 == len(table) == USERS
    for line, row in zip(rows[1:], table, strict=True):
        got = dict(zip(columns, line, strict=True))
        assert got["user_id"] == row["user_id"] and float(got["sex_proba"]) == row["sex_proba"]
        assert int(got["age_class"]) == row["age_class"] and got["model_version"] == row["model_version"]
        assert [float(x) for x in got["age_class_proba"].strip("{}").split(",")] == row["age_class_proba"]
        assert got["as_of"] == row["as_of"].isoformat()
    assert get(client, "/pipelines/sociodemo/predictions/runs.csv", ops).status_code == 404
    assert get(client, "/pipelines/sociodemo/predictions/Bad;Name.csv", ops).status_code in (404, 422)


def test_run_pages_and_self_contained_reports(client, ops, world):
    from pipelines.ops.jobs import render_reports

    run_id = world["trainings"]["20260307-bbbb2222"]["catboost"]
    page = get(client, f"/runs/{run_id}", ops)
    assert page.status_code == 200 and "topclass" in page.text and "oracle" in page.text
    assert get(client, "/runs/not-a-uuid", ops).status_code == 422
    assert get(client, f"/runs/{uuid.uuid4()}", ops).status_code == 404
    rendered = get(client, f"/runs/{run_id}/report", ops)
    assert rendered.status_code == 200 and rendered.headers["x-report"] == "rendered"
    html = rendered.text
    assert html.count("data:image/png;base64,") == 2  # roc in the markdown, the confusion matrix below it
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert 'src="http' not in html and "<link" not in html  # nothing fetched from elsewhere
    assert "1.6" in html and "2.05" in html and "0.38" in html  # own, oracle, the sibling baseline
    assert "promoted version\n<code>20260305-aaaa1111</code>: 1.93" in html
    done = render_reports([run_id])
    uri = done["written"][run_id]
    assert done["failed"] == {}
    assert uri.endswith(f"sociodemo/models/20260307-bbbb2222/catboost/run_report_{run_id}.html")
    stored = get(client, f"/runs/{run_id}/report", ops)
    with open(uri) as written:
        assert stored.headers["x-report"] == "stored" and stored.text == written.read()


@pytest.mark.parametrize("pipeline", ["retention", "recs", "sociodemo", "keystrokes", "tagging", "engagement"])
def test_every_view_of_every_pipeline_renders(client, ops, world, pipeline):
    """Pipelines with no run, no partition, no serving table yet still get every page, saying so."""
    for view in ("", "/quality", "/quarantine", "/data", "/predictions"):
        response = get(client, f"/pipelines/{pipeline}{view}", ops)
        assert response.status_code == 200, (view, response.text[:500])
        assert "Pipelines operations" in response.text


def test_what_inputs_wrote_is_shown_as_text(client, ops, world):
    html = get(client, "/pipelines/sociodemo/quarantine?limit=500", ops).text
    assert "onerror=alert(1)" in html  # the evidence is there ...
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html  # ... as text, never markup


def test_parameters_are_validated_before_any_query(client, ops):
    cases = {"/pipelines/sociodemo?metric=x' OR 1=1--": 422, "/pipelines/sociodemo?metric=not_recorded": 422,
             "/pipelines/sociodemo?training=nope": 404, "/pipelines/x'--": 404, "/pipelines/nope": 404,
             "/pipelines/sociodemo/quarantine?reason=a b": 422, "/pipelines/sociodemo/quarantine?partition=x'y": 422,
             "/pipelines/sociodemo/quarantine?before=-1": 422, "/pipelines/sociodemo/quarantine?limit=501": 422,
             "/alerts?kind=nope": 422, "/alerts?severity=fatal": 422, "/runs/x'y": 422}
    for path, status in cases.items():
        response = get(client, path, {**ops, "Accept": "text/html"})
        assert response.status_code == status, (path, response.text)
        assert "<!doctype html>" in response.text  # pages answer in HTML, with the reason
    assert get(client, "/api/alerts?limit=0", ops).json()["detail"][0]["loc"] == ["query", "limit"]


def test_the_page_reads_through_read_only_transactions(world):
    import psycopg2

    from pipelines.ops.queries import connect_readonly
    from pipelines.settings import pg_dsn

    conn = connect_readonly(pg_dsn())
    try:
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction), conn.cursor() as cur:
            cur.execute("DELETE FROM alerts")
    finally:
        conn.close()
    assert db.query("SELECT count(*) AS n FROM alerts")[0]["n"] == 2

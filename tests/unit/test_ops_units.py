"""Operations, no services: charts, the catalogue, alert messages, targets from the environment, the report's
markdown, the comparison of trainings, and what DAG parsing imports."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.ops import alerts, catalog, queries, svg, targets
from pipelines.ops.report import markdown_html, relative_to_root


# ------------------------------------------------------------------------------------ charts
def _svg(text: str) -> ET.Element:
    return ET.fromstring(text)


def test_grouped_bars_draw_every_value_and_the_ceiling():
    chart = svg.grouped_bars(["v1", "v2"], {"topclass": [0.37, 0.38], "catboost": [1.93, None]},
                             ceiling=[2.11, 2.05], title="t", y_label="contest_score")
    root = _svg(chart)
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
    assert len(bars) == 3  # None draws nothing
    assert sorted(b.find(f"{ns}title").text for b in bars) == ["v1 · catboost: 1.93", "v1 · topclass: 0.37",
                                                               "v2 · topclass: 0.38"]
    ceilings = [line for line in root.iter(f"{ns}line") if line.find(f"{ns}title") is not None]
    assert [c.find(f"{ns}title").text for c in ceilings] == ["v1 · oracle: 2.11", "v2 · oracle: 2.05"]
    heights = {b.find(f"{ns}title").text.split(" · ")[1]: float(b.get("height")) for b in bars
               if b.find(f"{ns}title").text.startswith("v1")}
    assert heights["catboost: 1.93"] / heights["topclass: 0.37"] == pytest.approx(1.93 / 0.37, rel=0.02)


def test_charts_escape_what_pipelines_wrote_and_say_when_empty():
    hostile = '<script>alert("x")</script>&'
    for chart in (svg.grouped_bars([hostile], {hostile: [1.0]}, title=hostile, y_label=hostile),
                  svg.stacked_rows([hostile], [5], [1], [0], ["warning"], title=hostile),
                  svg.share_line([hostile], [0.1], warn=0.05, limit=0.2, title=hostile)):
        assert "<script>" not in chart
        _svg(chart)  # well-formed
    assert "no metric recorded yet" in svg.grouped_bars([], {}, title="t", y_label="m")
    assert "no ingest run recorded yet" in svg.stacked_rows([], [], [], [], [], title="t")


def test_a_bad_day_stands_out():
    chart = svg.stacked_rows(["d1", "d2", "d3"], [100, 90, 0], [1, 10, 0], [0, 0, 0], [None, "warning", "rejected"],
                             title="rows")
    assert chart.count(f'fill="{svg.WARN}"><title>d2: warning') == 1
    assert chart.count(f'fill="{svg.REJECT}"><title>d3: rejected') == 1
    line = svg.share_line(["d1", "d2"], [0.01, 0.04], warn=0.025, limit=0.05, title="share")
    assert f'fill="{svg.WARN}"><title>d2: 4.00%' in line and 'fill="#444"><title>d1: 1.00%' in line


@pytest.mark.parametrize(("low", "high"), [(0, 2.116), (0, 1), (-0.2, 0.9), (0, 24661), (5, 5), (0, 1e-4)])
def test_ticks_cover_the_range(low, high):
    ticks = svg.nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and len(ticks) >= 2
    assert ticks == sorted(ticks)


# ------------------------------------------------------------------------------------ catalogue
def test_dags_belong_to_their_pipeline():
    assert catalog.pipeline_of_dag("sociodemo_train_weekly") == "sociodemo"
    assert catalog.pipeline_of_dag("keystrokes_predict") == "keystrokes"
    assert catalog.pipeline_of_dag("tagging_some_new_dag") == "tagging"
    assert catalog.pipeline_of_dag("other_dag") is None and catalog.pipeline_of_dag(None) is None
    assert catalog.info("unknown").title == "unknown" and catalog.info("engagement").higher_is_better is False


@pytest.mark.parametrize("text", ["x' OR 1=1--", "a;drop", "", "../etc", "a b", "é", "x" * 200])
def test_names_from_urls_are_refused_unless_plain(text):
    assert not catalog.valid_name(text)


def test_plain_names_are_accepted():
    for text in ("sociodemo", "model=catboost", "20260305-aaaa1111", "gru@20260301-ab", "share_of_oracle"):
        assert catalog.valid_name(text)


# ------------------------------------------------------------------------------------ alert messages
class _TI:
    def __init__(self, try_number, map_index=-1, log_url=None):
        self.dag_id, self.task_id, self.run_id = "recs_daily", "write_shard", "manual__2026-03-03T02:00:00+00:00"
        self.try_number, self.map_index, self.log_url = try_number, map_index, log_url


class _Task:
    retries = 2


def _error() -> BaseException:
    def deep(n):
        if n == 0:
            raise RuntimeError("DynamoDB kept 25 items unprocessed")
        deep(n - 1)

    try:
        deep(60)
    except RuntimeError as exc:
        return exc


def test_a_failed_task_alert_says_what_where_and_why(monkeypatch):
    monkeypatch.setenv("PIPELINES_OPS_BASE_URL", "https://airflow.example")
    alert = alerts.from_task_failure({"ti": _TI(3, map_index=4), "task": _Task(), "exception": _error(),
                                      "logical_date": datetime(2026, 3, 3, 2, tzinfo=UTC)})
    assert alert.kind == "retries_exhausted" and alert.pipeline == "recs" and alert.map_index == 4
    assert alert.dedup_key == "task:recs_daily:manual__2026-03-03T02:00:00+00:00:write_shard:4:3"
    assert alert.details["log_url"] == ("https://airflow.example/dags/recs_daily/runs/"
                                        "manual__2026-03-03T02%3A00%3A00%2B00%3A00/tasks/write_shard/mapped/4")
    tail = alert.details["error"].splitlines()
    assert len(tail) <= alerts.ERROR_LINES and tail[-1] == "RuntimeError: DynamoDB kept 25 items unprocessed"
    long = alerts.error_tail("\n".join(f"line {i}" for i in range(100)))
    assert long.splitlines() == [f"line {i}" for i in range(100 - alerts.ERROR_LINES, 100)]
    assert len(alerts.error_tail("x" * 10 * alerts.ERROR_CHARS)) == alerts.ERROR_CHARS
    text = alert.text()
    assert "write_shard[4] failed after 3 tries (retries exhausted)" in text and "map index: 4" in text
    payload = alert.payload()
    assert json.loads(json.dumps(payload))["alert"]["logical_date"] == "2026-03-03T02:00:00+00:00"
    first = alerts.from_task_failure({"ti": _TI(1), "task": _Task(), "exception": "rejected: 9% bad rows"})
    assert first.kind == "task_failed" and "failed without retry" in first.message
    assert first.dedup_key != alert.dedup_key


def test_alerts_refuse_unknown_kinds_and_severities():
    with pytest.raises(ValueError, match="kind"):
        alerts.Alert(kind="oops", severity="error", message="m", dedup_key="k")
    with pytest.raises(ValueError, match="severity"):
        alerts.Alert(kind="test", severity="fatal", message="m", dedup_key="k")


# ------------------------------------------------------------------------------------ targets
@pytest.fixture
def clean_env(monkeypatch):
    for var in ("PIPELINES_ALERT_WEBHOOK_URL", "PIPELINES_ALERT_SMTP_URL", "PIPELINES_ALERT_EMAIL_TO",
                "AIRFLOW_CONN_PIPELINES_ALERTS_WEBHOOK", "AIRFLOW_CONN_PIPELINES_ALERTS_SMTP"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_targets_from_the_environment_and_connections(clean_env):
    assert targets.configured_targets() == []
    clean_env.setenv("AIRFLOW_CONN_PIPELINES_ALERTS_WEBHOOK",
                     json.dumps({"conn_type": "http", "extra": {"url": "https://hooks.example/T0/B0"}}))
    assert targets.webhook_target().url == "https://hooks.example/T0/B0"
    clean_env.setenv("PIPELINES_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")  # the variable wins
    assert targets.webhook_target().url == "http://127.0.0.1:9/hook"
    clean_env.setenv("PIPELINES_ALERT_WEBHOOK_URL", "ftp://x")
    with pytest.raises(ValueError, match="http"):
        targets.webhook_target()
    clean_env.delenv("PIPELINES_ALERT_WEBHOOK_URL")
    clean_env.setenv("AIRFLOW_CONN_PIPELINES_ALERTS_SMTP",
                     json.dumps({"conn_type": "smtp", "host": "mail.example", "port": 587, "login": "bot",
                                 "password": "s3cret", "extra": {"to": "a@x.org,b@x.org", "starttls": "true"}}))
    email = targets.email_target()
    assert (email.host, email.port, email.recipients, email.starttls) == ("mail.example", 587,
                                                                          ("a@x.org", "b@x.org"), True)
    assert "s3cret" not in repr(email) and "s3cret" not in email.label
    clean_env.setenv("PIPELINES_ALERT_SMTP_URL", "smtps://u:p%40ss@smtp.example?from=af@x.org")
    clean_env.setenv("PIPELINES_ALERT_EMAIL_TO", "oncall@x.org")
    email = targets.email_target()
    assert (email.port, email.use_ssl, email.password, email.sender) == (465, True, "p@ss", "af@x.org")
    assert len(targets.configured_targets()) == 2


# ------------------------------------------------------------------------------------ reports
def test_report_markdown_embeds_images_and_escapes_html():
    png = b"\x89PNG\r\n\x1a\nfake"
    used: set[str] = set()
    html = markdown_html("# R\n\n![roc](roc.png)\n\n![gone](missing.png)\n\n<script>alert(1)</script>\n\n"
                         "| a | b |\n|---|---|\n| 1 | 2 |\n", "m/v/report", {"m/v/report/roc.png": png}, used)
    assert used == {"m/v/report/roc.png"} and "data:image/png;base64," in html
    assert "<script>" not in html and "&lt;script&gt;" in html and "<table>" in html
    assert "missing.png not found" in html


def test_report_paths_stay_inside_the_data_root():
    class Root:
        uri = "/data"

    assert relative_to_root("/data/sociodemo/models/v1", Root()) == "sociodemo/models/v1"
    assert relative_to_root("file:///data/x/y.png", Root()) == "x/y.png"
    for outside in ("/etc/passwd", "/data/../etc", "/data2/x", "/data/a/../../etc", None, ""):
        assert relative_to_root(outside, Root()) is None


# ------------------------------------------------------------------------------------ comparisons
def test_trainings_gather_each_model_its_baselines_and_the_oracle():
    t0 = datetime(2026, 3, 5, tzinfo=UTC)
    runs = [{"run_id": "a", "status": "success", "model_version": "v1", "model_name": "catboost", "kind": "train",
             "started_at": t0, "params": {}},
            {"run_id": "b", "status": "success", "model_version": "v1", "model_name": "topclass", "kind": "train",
             "started_at": t0, "params": {}},
            {"run_id": "c", "status": "success", "model_version": "v2", "model_name": "catboost", "kind": "train",
             "started_at": t0 + timedelta(days=2), "params": {}},
            {"run_id": "d", "status": "failed", "model_version": "v3", "model_name": "catboost", "kind": "train",
             "started_at": t0 + timedelta(days=3), "params": {}}]
    metrics = [{"run_id": "a", "segment": "", "name": "score", "value": 1.9},
               {"run_id": "a", "segment": "model=topclass", "name": "score", "value": 0.5},  # a peer's view
               {"run_id": "a", "segment": "oracle", "name": "score", "value": 2.1},
               {"run_id": "b", "segment": "", "name": "score", "value": 0.4},  # topclass's own run wins
               {"run_id": "c", "segment": "", "name": "score", "value": 1.7},
               {"run_id": "c", "segment": "speed", "name": "seconds", "value": 3.0},
               {"run_id": "d", "segment": "", "name": "score", "value": 0.1}]
    comparison = queries.build_comparison(catalog.PipelineInfo(name="p", title="p", metric="score"), runs, metrics)
    assert [t["key"] for t in comparison.trainings] == ["v1", "v2"]  # failed runs are not versions
    assert comparison.models == ["catboost", "topclass", "oracle"]  # the oracle last
    assert comparison.series() == {"catboost": [1.9, 1.7], "topclass": [0.4, None], "oracle": [2.1, None]}
    assert comparison.trainings[0]["runs"] == {"catboost": "a", "topclass": "b"}
    assert comparison.metric_names == ["score"]  # other segments (speed) are not model comparisons


def test_trainings_can_be_grouped_by_a_pipeline_param():
    t0 = datetime(2026, 3, 5, tzinfo=UTC)
    runs = [{"run_id": r, "status": "success", "model_version": f"20260305-{r}", "model_name": "keystrokes",
             "kind": "train", "started_at": t0, "params": {"training_id": "T1", "type": t}}
            for r, t in (("a", "gru"), ("b", "logreg"))]
    metrics = [{"run_id": "a", "segment": "", "name": "accuracy", "value": 0.9},
               {"run_id": "b", "segment": "", "name": "accuracy", "value": 0.7}]
    comparison = queries.build_comparison(catalog.CATALOG["keystrokes"], runs, metrics)
    assert [t["key"] for t in comparison.trainings] == ["T1"]
    assert comparison.series() == {"gru": [0.9], "logreg": [0.7]}


# ------------------------------------------------------------------------------------ what DAG parsing imports
def test_the_notifier_module_is_light_and_the_deadline_is_well_formed():
    probe = ("import sys, json, airflow.sdk; base = {m.split('.')[0] for m in sys.modules}; "
             "import pipelines.dagkit as k; args = k.default_args('o'); "
             "from datetime import timedelta; d = k.overrun_alert(timedelta(hours=2)); "
             "print(json.dumps({'heavy': sorted(({m.split('.')[0] for m in sys.modules} - base) & {'psycopg2', "
             "'fastapi', 'requests', 'pandas', 'numpy', 'sqlalchemy'}), 'ours': sorted(m for m in sys.modules "
             "if m.startswith('pipelines')), 'callback': type(args['on_failure_callback']).__name__, "
             "'path': d.callback.path, 'kwargs': d.callback.kwargs, 'interval': d.interval.total_seconds(), "
             "'reference': type(d.reference).__name__}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and set(result["ours"]) == {"pipelines", "pipelines.dagkit", "pipelines.ops",
                                                             "pipelines.ops.notify"}
    assert result["callback"] == "PipelineAlertNotifier"
    assert result["path"] == "pipelines.ops.notify.on_dag_overrun" and result["kwargs"] == {"expected_s": 7200.0}
    assert result["interval"] == 7200 and result["reference"] == "DagRunQueuedAtDeadline"
    from pipelines.ops.notify import overrun_deadline

    with pytest.raises(ValueError, match="positive"):
        overrun_deadline(timedelta(0))


def test_the_plugin_module_is_light():
    probe = ("import sys, importlib.util; "
             "spec = importlib.util.spec_from_file_location('p', 'plugins/pipelines_ops.py'); "
             "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); p = m.PipelinesOpsPlugin(); "
             "print(p.external_views[0]['href'], 'fastapi' in sys.modules, 'pipelines.ops.web.app' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert out.stdout.split()[-3:] == ["pipelines-ops/", "False", "False"]  # the app is built on first use only


# ------------------------------------------------------------------------------------ where the page reads from
def test_the_page_finds_the_database_like_the_platform_then_through_airflow(monkeypatch):
    from pipelines.ops.web import app as web

    monkeypatch.setenv("PIPELINES_PG_DSN", "postgresql://u@db.example:5432/pipelines")
    from pipelines.settings import get_settings

    get_settings.cache_clear()
    assert web.ops_dsn() == "postgresql://u@db.example:5432/pipelines"
    monkeypatch.delenv("PIPELINES_PG_DSN")
    monkeypatch.delenv("AIRFLOW_CONN_PIPELINES_POSTGRES", raising=False)
    get_settings.cache_clear()

    class Conn:
        @staticmethod
        def get_uri() -> str:
            return "postgres://ops:s3cret@warehouse.internal:6432/pipelines"

    import airflow.models.connection as connection

    monkeypatch.setattr(connection.Connection, "get_connection_from_secrets", classmethod(lambda cls, cid: Conn()))
    web._DSN_CACHE.clear()
    assert web.ops_dsn() == "postgresql://ops:s3cret@warehouse.internal:6432/pipelines"
    get_settings.cache_clear()


@pytest.mark.parametrize(("dataset_id", "ok"), [("partition:2026-03-02", True), ("partition:targets", True),
                                                 (f"run:{'0' * 8}-0000-0000-0000-{'0' * 12}", True),
                                                 ("partition:../../etc", False), ("run:not-a-uuid", False),
                                                 ("/etc/passwd", False), ("partition:a b", False)])
def test_data_sets_are_named_by_id_never_by_path(dataset_id, ok):
    from pipelines.ops.datasets import valid_id

    assert valid_id(dataset_id) is ok

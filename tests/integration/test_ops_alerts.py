"""Alerts against the real PostgreSQL and local receivers: recorded once, sent once, failures recorded; the
quarantine-share warning through ``ingest.run_ingest``; the metric drop through ``registry.track_run``; the
failure notifier with an Airflow-shaped context."""

from __future__ import annotations

import smtplib
import socket
import threading
import uuid
from datetime import UTC, datetime

import pytest

from pipelines import db, registry
from pipelines.ops import alerts, targets
from tests.e2e.test_ops_seed import MAX_BAD_SHARE, ROWS, WebhookReceiver, _validator

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _no_targets(monkeypatch):
    for var in ("PIPELINES_ALERT_WEBHOOK_URL", "PIPELINES_ALERT_SMTP_URL", "PIPELINES_ALERT_EMAIL_TO",
                "AIRFLOW_CONN_PIPELINES_ALERTS_WEBHOOK", "AIRFLOW_CONN_PIPELINES_ALERTS_SMTP",
                "PIPELINES_OPS_QUARANTINE_WARN_RATIO", "PIPELINES_OPS_METRIC_TOLERANCE",
                "PIPELINES_OPS_METRIC_TOLERANCE_SOCIODEMO"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(targets.time, "sleep", lambda s: None)  # retries without waiting


@pytest.fixture
def schema(pg_dsn):
    from pipelines.migrate import upgrade

    assert upgrade() == "0008"
    return pg_dsn


@pytest.fixture
def receiver(monkeypatch):
    with WebhookReceiver() as hook:
        monkeypatch.setenv("PIPELINES_ALERT_WEBHOOK_URL", hook.url)
        yield hook


def _rows(where: str = "TRUE", params=()) -> list[dict]:
    return db.query(f"SELECT * FROM alerts WHERE {where} ORDER BY id", params)


def _alert(key: str = "k1", **kw) -> alerts.Alert:
    return alerts.Alert(kind=kw.pop("kind", "task_failed"), severity=kw.pop("severity", "error"),
                        message=kw.pop("message", "Task x.y failed"), dedup_key=key, dag_id="sociodemo_daily", **kw)


def test_an_alert_is_recorded_once_and_sent_once(schema, receiver):
    first = alerts.raise_alert(_alert())
    again = alerts.raise_alert(_alert())
    assert first.new and not again.new and again.alert_id == first.alert_id
    rows = _rows()
    assert len(rows) == 1 and len(receiver.calls) == 1
    row = rows[0]
    assert row["pipeline"] == "sociodemo" and row["notified_ok"] is True and row["notified_at"] is not None
    assert row["notify_targets"] == [targets.webhook_target().label]
    body = receiver.calls[0]["body"]
    assert receiver.calls[0]["content_type"] == "application/json"
    assert body["alert"]["dedup_key"] == "k1" and "Task x.y failed" in body["text"]


def test_a_failed_delivery_is_retried_then_recorded(schema, receiver):
    receiver.status = 500
    raised = alerts.raise_alert(_alert("k2"))
    assert raised.notified_ok is False
    assert len(receiver.calls) == targets.ATTEMPTS  # 5xx is retried
    row = _rows()[0]
    assert row["notified_ok"] is False and "HTTP 500" in row["notify_error"]
    receiver.status = 400  # a 4xx is the receiver refusing the message: not retried
    alerts.raise_alert(_alert("k3"))
    assert len(receiver.calls) == targets.ATTEMPTS + 1


def test_without_a_target_the_alert_is_recorded_only(schema):
    raised = alerts.raise_alert(_alert("k4"))
    assert raised.new and raised.targets == []
    row = _rows()[0]
    assert row["notified_ok"] is None and row["notify_targets"] is None


def test_nul_and_control_characters_never_reach_postgres(schema):
    alerts.raise_alert(_alert("k5", message="bad \x00 byte \x07 bell", details={"error": "x\x00y"}))
    row = _rows()[0]
    assert "\x00" not in row["message"] and "\u2400" in row["message"]
    assert "\x00" not in row["details"]["error"]


def test_when_postgres_is_down_the_alert_is_still_sent(schema, receiver):
    down = "postgresql://postgres@127.0.0.1:1/nowhere"
    raised = alerts.raise_alert(_alert("k6"), dsn=down)
    assert raised.alert_id is None and raised.notified_ok is True
    assert "could not be recorded" in receiver.calls[0]["body"]["note"]


class _SmtpStub:
    """Enough SMTP for smtplib: records the DATA of each message."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.messages: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        stream = conn.makefile("rwb")

        def say(line: str) -> None:
            stream.write(line.encode() + b"\r\n")
            stream.flush()

        say("220 stub")
        data, in_data = [], False
        for raw in stream:
            line = raw.decode().rstrip("\r\n")
            if in_data:
                if line == ".":
                    self.messages.append("\n".join(data))
                    in_data = False
                    say("250 queued")
                else:
                    data.append(line)
                continue
            verb = line.split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250 stub")
            elif verb == "DATA":
                in_data = True
                say("354 go")
            elif verb == "QUIT":
                say("221 bye")
                break
            else:
                say("250 ok")
        conn.close()


def test_an_email_target_gets_the_message(schema, monkeypatch):
    stub = _SmtpStub()
    monkeypatch.setenv("PIPELINES_ALERT_SMTP_URL", f"smtp://127.0.0.1:{stub.port}?from=airflow@example.org")
    monkeypatch.setenv("PIPELINES_ALERT_EMAIL_TO", "ops@example.org, oncall@example.org")
    raised = alerts.raise_alert(_alert("k7", message="Task sociodemo_daily.score failed"))
    assert raised.notified_ok is True, raised.error
    text = stub.messages[0]
    assert "To: ops@example.org, oncall@example.org" in text and "From: airflow@example.org" in text
    assert "[ERROR] sociodemo: Task sociodemo_daily.score failed" in text


def test_a_broken_smtp_server_is_recorded(schema, monkeypatch):
    monkeypatch.setenv("PIPELINES_ALERT_SMTP_URL", "smtp://127.0.0.1:1")
    monkeypatch.setenv("PIPELINES_ALERT_EMAIL_TO", "ops@example.org")
    raised = alerts.raise_alert(_alert("k8"))
    assert raised.notified_ok is False and _rows()[0]["notify_error"].startswith("email ops@example.org")
    with pytest.raises((smtplib.SMTPException, OSError)):
        targets.send_email(targets.email_target(), "s", "t")


# ------------------------------------------------------------------------------------ quarantine share (ingest)
def _ingest(day: str, index: int) -> None:
    from pipelines import ingest

    ingest.run_ingest("sociodemo", day, _validator(index), max_bad_share=MAX_BAD_SHARE,
                      benign_reasons=("merged_duplicate",))


def test_a_day_past_its_warning_level_warns_once_per_attempt(schema, data_root, receiver):
    from pipelines.errors import RunRejected

    _ingest("2026-03-02", 3)  # 4 bad of 400: 1%, under the warning level (2.5%)
    assert _rows() == []
    _ingest("2026-03-03", 4)  # 12 bad of 400: 3%, past the warning level, under the threshold (5%)
    rows = _rows()
    assert len(rows) == 1 and rows[0]["kind"] == "quarantine_share" and rows[0]["severity"] == "warning"
    details = rows[0]["details"]
    assert details["partition"] == "2026-03-03" and details["bad_share"] == pytest.approx(12 / ROWS)
    assert details["warn_level"] == pytest.approx(0.025) and details["max_bad_share"] == MAX_BAD_SHARE
    assert details["reasons"]["merged_duplicate"] == 5  # benign reasons are listed, not counted as bad
    assert "merged_duplicate" not in rows[0]["message"]
    partition_run = db.query("SELECT run_id FROM ingest_partitions WHERE partition_key = '2026-03-03'")[0]["run_id"]
    assert rows[0]["registry_run_id"] == partition_run
    with pytest.raises(RunRejected):
        _ingest("2026-03-04", 5)  # 10%: rejected; the failing task alerts, not the quarantine check
    assert len(_rows()) == 1 and len(receiver.calls) == 1


def test_the_warning_level_is_configurable(schema, data_root, monkeypatch):
    monkeypatch.setenv("PIPELINES_OPS_QUARANTINE_WARN_RATIO", "0.9")  # warn at 4.5%
    _ingest("2026-03-03", 4)
    assert _rows() == []
    monkeypatch.setenv("PIPELINES_OPS_QUARANTINE_WARN_RATIO", "2")
    _ingest("2026-03-05", 4)  # a wrong setting never fails the ingest: it is logged
    assert _rows() == []


# ------------------------------------------------------------------------------------ metric drop (registry)
def _train(pipeline: str, model: str, metric: str, value: float, version: str, kind: str = "train") -> str:
    with registry.track_run(pipeline, kind, model_name=model, model_version=version) as run:
        run.log_metrics({metric: value})
    return str(run.run_id)


def test_a_model_worse_than_the_promoted_version_alerts(schema, monkeypatch):
    promoted = _train("sociodemo", "catboost", "contest_score", 1.93, "v1")
    registry.promote("sociodemo", "catboost", promoted)
    _train("sociodemo", "catboost", "contest_score", 1.90, "v2")  # 1.6% worse: within the 5% tolerance
    _train("sociodemo", "topclass", "contest_score", 0.30, "v2")  # no promoted topclass: nothing to compare
    assert _rows() == []
    worse = _train("sociodemo", "catboost", "contest_score", 1.60, "v3")
    rows = _rows()
    assert len(rows) == 1 and rows[0]["kind"] == "metric_drop" and rows[0]["registry_run_id"] == worse
    d = rows[0]["details"]
    assert d["reference_run"] == promoted and d["compared_with"] == "promoted"
    assert d["relative_drop"] == pytest.approx((1.93 - 1.60) / 1.93)
    monkeypatch.setenv("PIPELINES_OPS_METRIC_TOLERANCE_SOCIODEMO", "0.5")
    _train("sociodemo", "catboost", "contest_score", 1.20, "v4")  # 38% worse, tolerance 50%
    assert len(_rows()) == 1


def test_lower_is_better_metrics_and_failed_runs(schema):
    registry.promote("engagement", "catboost", _train("engagement", "catboost", "rmse_log1p", 0.80, "e1"))
    _train("engagement", "catboost", "rmse_log1p", 0.70, "e2")  # better
    assert _rows() == []
    _train("engagement", "catboost", "rmse_log1p", 0.90, "e3")  # 12.5% worse
    assert [r["details"]["value"] for r in _rows()] == [0.90]
    with pytest.raises(RuntimeError), registry.track_run("engagement", "train", model_name="catboost") as run:
        run.log_metrics({"rmse_log1p": 5.0})
        raise RuntimeError("training crashed")
    assert len(_rows()) == 1  # a failed run is the task's failure alert, not a metric drop


def test_pipelines_without_promotion_compare_with_the_previous_version(schema):
    _train("recs", "user_user_cf", "ndcg_at_10", 0.30, "r1", kind="evaluate")
    _train("recs", "user_user_cf", "ndcg_at_10", 0.29, "r2", kind="evaluate")
    assert _rows() == []
    _train("recs", "user_user_cf", "ndcg_at_10", 0.20, "r3", kind="evaluate")
    rows = _rows()
    assert len(rows) == 1 and rows[0]["details"]["compared_with"] == "previous"
    assert rows[0]["details"]["reference"] == pytest.approx(0.29)


# ------------------------------------------------------------------------------------ the failure notifier
class _TI:
    dag_id, task_id, run_id, map_index = "sociodemo_daily", "score", "scheduled__2026-03-03T01:00:00+00:00", -1
    log_url = "http://airflow.example/dags/sociodemo_daily/runs/x/tasks/score?try_number=3"

    def __init__(self, try_number: int) -> None:
        self.try_number = try_number


class _Task:
    task_id, retries = "score", 2


def _context(try_number: int) -> dict:
    try:
        raise ValueError("the model returned probabilities outside [0, 1]")
    except ValueError as exc:
        error = exc
    return {"ti": _TI(try_number), "task": _Task(), "exception": error,
            "logical_date": datetime(2026, 3, 3, 1, tzinfo=UTC)}


def test_the_notifier_records_and_sends_one_alert_per_failed_task(schema, receiver):
    from pipelines.ops.notify import task_failure_notifier

    notifier = task_failure_notifier()
    notifier(_context(3))
    notifier(_context(3))  # Airflow running the callback twice: still one row, one message
    rows = _rows()
    assert len(rows) == 1 and len(receiver.calls) == 1
    row = rows[0]
    assert row["kind"] == "retries_exhausted" and row["try_number"] == 3 and row["task_id"] == "score"
    assert row["logical_date"] == datetime(2026, 3, 3, 1, tzinfo=UTC) and row["pipeline"] == "sociodemo"
    assert row["details"]["log_url"] == _TI.log_url
    text = receiver.calls[0]["body"]["text"]
    for expected in ("sociodemo_daily", "score", "2026-03-03T01:00:00+00:00", _TI.log_url,
                     "ValueError: the model returned probabilities outside [0, 1]", "retries exhausted"):
        assert expected in text, expected
    notifier(_context(1))  # failed without retry on its first try (e.g. rejected input)
    assert [r["kind"] for r in _rows()] == ["retries_exhausted", "task_failed"]


def test_overrun_alert_from_a_deadline_context(schema, receiver):
    import asyncio

    from pipelines.ops.notify import on_dag_overrun

    context = {"dag_run": {"dag_id": "recs_daily", "dag_run_id": "manual__1", "state": "running",
                           "logical_date": "2026-03-03T02:00:00Z", "queued_at": "2026-03-04T02:00:00Z"},
               "deadline": {"id": str(uuid.uuid4()), "deadline_time": "2026-03-04T05:00:00Z"}}
    result = asyncio.run(on_dag_overrun(context=context, expected_s=3 * 3600))
    again = asyncio.run(on_dag_overrun(context=context, expected_s=3 * 3600))
    assert isinstance(result, str)  # Airflow stores it in a text column: anything else stops the triggerer
    assert result.endswith("recorded; delivered: True") and "not sent again" in again
    row = _rows()[0]
    assert row["kind"] == "dag_overrun" and row["pipeline"] == "recs" and "after 180 min" in row["message"]
    assert len(receiver.calls) == 1

"""What the operations tests read: a small platform history written through the platform's own code paths.

No tests here: :func:`seed_platform` is imported by ``tests/integration/test_ops_page.py`` and
``tests/e2e/test_ops_airflow.py``. It writes, into the configured PostgreSQL and data root:

* sociodemo ingest runs through ``ingest.run_ingest`` (a validator with planted bad rows): four clean days, one
  day past the warning level (a ``quarantine_share`` alert from the real hook) and one rejected day;
* two trainings through ``registry.track_run`` (topclass, catboost, the oracle as a segment) with a
  ``report.md`` and a PNG beside the models, the first catboost promoted, the second one worse by more than
  the tolerance (a ``metric_drop`` alert from the real hook);
* ``sociodemo_predictions`` rows, and one engagement training (a lower-is-better metric).

Every figure is known, so the tests compare what the page shows with what was written.
"""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, date, datetime, timedelta

DAYS = [date(2026, 3, 2) + timedelta(days=i) for i in range(6)]
#: Bad rows planted per day (of ROWS read): the fifth day passes the warning level, the sixth the threshold.
ROWS = 400
BAD = {0: 2, 1: 3, 2: 1, 3: 4, 4: 12, 5: 40}
MAX_BAD_SHARE = 0.05
TRAININGS = {
    "20260305-aaaa1111": {"topclass": 0.37, "catboost": 1.93, "oracle": 2.11},
    "20260307-bbbb2222": {"topclass": 0.38, "catboost": 1.60, "oracle": 2.05},
}
USERS = 1200


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    ax.set_title("roc")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _validator(day_index: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines import ingest

    def validate(staging, result) -> None:
        bad = BAD[day_index]
        result.rows_read = ROWS
        result.rows_valid = ROWS - bad
        result.files = ["events.parquet"]
        reasons = ["duplicate", "missing_uid", "negative_watchtime"]
        rows = []
        for i in range(bad):
            reason = reasons[i % len(reasons)]
            result.add(reason)
            note = "bad\x00byte" if i == 0 else "<img src=x onerror=alert(1)>" if i == 1 else "x"
            rows.append({"source": "events.parquet", "reason": reason, "detail": f"row {i}",
                         "record": {"viewer_uid": f"u{i}", "watch": -i, "note": note}})
        result.add("merged_duplicate", 5)  # benign: counted, not bad
        ingest.quarantine_from_rows(staging.path("quarantine.parquet"), rows)
        pq.write_table(pa.table({"viewer_uid": [f"u{i}" for i in range(ROWS - bad)],
                                 "total_watchtime": [float(i % 97) for i in range(ROWS - bad)],
                                 "region": ["Moscow" if i % 3 else "Tver" for i in range(ROWS - bad)]}),
                       staging.path("events.parquet"))

    return validate


def _training(version: str, values: dict[str, float], as_of: date, png: bytes, promote: bool) -> dict[str, str]:
    from pipelines import registry
    from pipelines.storage import DataRoot

    root = DataRoot()
    rel = f"sociodemo/models/{version}"
    root.put_bytes(b"# Held-out evaluation\n\n| model | contest_score |\n|---|---:|\n"
                   + "".join(f"| {m} | {v} |\n" for m, v in values.items()).encode()
                   + b"\n![roc](roc_sex.png)\n\n<script>alert(1)</script>\n", f"{rel}/report/report.md")
    root.put_bytes(png, f"{rel}/report/roc_sex.png")
    root.put_bytes(png, f"{rel}/report/confusion_age_catboost.png")
    interval = (datetime.combine(as_of, datetime.min.time(), UTC),
                datetime.combine(as_of + timedelta(days=1), datetime.min.time(), UTC))
    runs = {}
    with contextlib.ExitStack() as stack:
        opened = {name: stack.enter_context(registry.track_run(
            "sociodemo", "train", model_name=name, model_version=version, interval=interval,
            params={"as_of": as_of, "models": ["topclass", "catboost"], "seed": 42, "iterations": 60}))
            for name in ("topclass", "catboost")}
        for name, run in opened.items():
            root.put_bytes(b"{}", f"{rel}/{name}/model.json")
            run.artifact_uri = root.join(rel, name)
            run.log_metrics({"contest_score": values[name], "sex_roc_auc": 0.5 + values[name] / 6, "n": 229})
            run.log_metrics({"contest_score": values["oracle"], "sex_roc_auc": 0.92, "n": 229}, segment="oracle")
            if name == "catboost":
                run.log_metrics({"contest_score": values["topclass"]}, segment="model=topclass")
            run.log_metrics({"seconds": 1.5}, segment="speed")
            run.summary = {"version": version, "report": [root.join(rel, "report", "report.md"),
                                                          root.join(rel, "report", "roc_sex.png")]}
            runs[name] = str(run.run_id)
    if promote:
        registry.promote("sociodemo", "catboost", runs["catboost"], by="tests")
    return runs


def seed_platform() -> dict:
    """Write the history described in the module docstring; returns the ids the tests look for."""
    from pipelines import db, ingest, registry
    from pipelines.errors import RunRejected
    from pipelines.migrate import ensure_schema
    from pipelines.settings import pg_dsn

    dsn = pg_dsn()
    ensure_schema(dsn)
    accepted, rejected = [], []
    for i, day in enumerate(DAYS):
        try:
            ingest.run_ingest("sociodemo", day.isoformat(), _validator(i), max_bad_share=MAX_BAD_SHARE,
                              benign_reasons=("merged_duplicate",))
            accepted.append(day.isoformat())
        except RunRejected:
            rejected.append(day.isoformat())
    png = _png()
    trainings = {}
    for n, (version, values) in enumerate(TRAININGS.items()):
        trainings[version] = _training(version, values, DAYS[2 + 2 * n], png, promote=n == 0)
    with db.transaction(dsn) as cur:
        cur.executemany(
            """INSERT INTO sociodemo_predictions (user_id, sex_proba, age_class, age_class_proba, model_name,
                                                  model_version, as_of, scored_at)
               VALUES (%s, %s, %s, %s, 'catboost', '20260305-aaaa1111', %s, %s)""",
            [(f"{i:06d}", (i % 100) / 100, i % 4, [0.25, 0.25, 0.25, 0.25], DAYS[3], datetime(2026, 3, 6, tzinfo=UTC))
             for i in range(USERS)])
    with registry.track_run("engagement", "train", model_name="catboost", model_version="20260307-cccc3333",
                            params={"seed": 1}) as run:
        run.log_metrics({"rmse_log1p": 0.81, "mae_log1p": 0.6})
        run.log_metrics({"rmse_log1p": 1.02}, segment="model=mean")
        run.log_metrics({"rmse_log1p": 0.55}, segment="model=oracle")
    return {"accepted": accepted, "rejected": rejected, "trainings": trainings, "engagement_run": str(run.run_id),
            "bad": dict(BAD), "rows": ROWS}


def expected_quarantine_rows() -> int:
    """Quarantine rows kept: every accepted day's bad rows (a rejected day of a new partition keeps its own)."""
    return sum(BAD.values())


def dump(obj) -> str:
    return json.dumps(obj, default=str, indent=2)


if __name__ == "__main__":  # a development database by hand: PIPELINES_PG_DSN=... python -m tests.e2e.test_ops_seed
    print(dump(seed_platform()))


class WebhookReceiver:
    """A local HTTP receiver standing in for the alert webhook: records every POST (path, JSON body) and
    answers with ``status``. Use as a context manager; ``url`` is where to point PIPELINES_ALERT_WEBHOOK_URL."""

    def __init__(self, status: int = 200) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self
        self.status = status
        self.calls: list[dict] = []
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.calls.append({"path": self.path, "body": json.loads(body or b"null"),
                                           "content_type": self.headers.get("Content-Type")})
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def scratch_database(admin_dsn: str, name: str) -> str:
    """Create an empty database; returns its ``postgresql://`` URI."""
    import psycopg2

    from tests.conftest import _libpq_to_uri, _with_db

    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return _libpq_to_uri(_with_db(admin_dsn, name))


def drop_database(admin_dsn: str, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()

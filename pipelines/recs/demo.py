"""The recommendations part of ``make demo``: two daily snapshots through ``recs_daily``, then the live version,
its held-out evaluation, and the API answering over HTTP from DynamoDB."""

from __future__ import annotations

from datetime import date, timedelta
from datetime import time as dtime

from pipelines.demo import DemoContext, say, table

RECS_DAY = date(2026, 11, 2)


def run(ctx: DemoContext) -> None:
    from pipelines.recs import jobs

    users = ctx.sizes.get("recs_users", 8_000)
    days = [RECS_DAY - timedelta(days=1), RECS_DAY]
    with ctx.quietly():
        for d in days:
            made = jobs.generate(d, n_users=users, n_artists=users, start=days[0])
    say(f"Generated Last.fm-format snapshots for {days[0]} and {days[1]} "
        f"({made.get('users', users):,} users, {made.get('rows', 0):,} play rows each)")
    ctx.run_days("recs_daily", days, at=dtime(2), conf={"eval_users": 1000})
    _summary()


def _summary() -> None:
    import json
    import threading
    import time
    import urllib.request

    import uvicorn

    from pipelines import db
    from pipelines.recs.api import create_app
    from pipelines.recs.dynamo import RecsStore
    from pipelines.services import free_port

    say("\n== recs_daily wrote ==")
    pointer = RecsStore().current() or {}
    say(f"DynamoDB: live version {pointer.get('current_version')} (snapshot {pointer.get('generated_on')}, "
        f"{pointer.get('item_count')} items); previous: {[h['version'] for h in pointer.get('history', [])]}")
    metrics = ("ndcg_at_10", "precision_at_10", "recall_at_10", "coverage")
    picks = ", ".join(f"round(max(m.value) FILTER (WHERE m.name = '{name}')::numeric, 4) AS {name}"
                      for name in metrics)
    rows = db.query(f"""SELECT substr(m.segment, 7) AS model, {picks}
                       FROM run_metrics m JOIN runs r USING (run_id)
                       WHERE r.run_id = (SELECT run_id FROM runs WHERE pipeline = 'recs' AND kind = 'evaluate'
                                         AND status = 'success' ORDER BY finished_at DESC LIMIT 1)
                         AND m.segment LIKE 'model=%%'
                       GROUP BY m.segment ORDER BY 2 DESC""")
    say("Held-out evaluation of the live version (run_metrics):\n" + table(rows))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        user = db.query("SELECT summary->>'sample_user' AS u FROM runs WHERE pipeline = 'recs' AND kind = 'publish' "
                        "AND status = 'success' ORDER BY finished_at DESC LIMIT 1")[0]["u"]
        unknown = "0" * 40
        for path in (f"/users/{user}/recommendations?n=5", f"/users/{unknown}/recommendations?n=3&country=Poland"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
                body = json.loads(resp.read())
            say(f"GET {path}\n  -> {body['source']}: " + ", ".join(r["artist"] for r in body["recommendations"]))
    finally:
        server.should_exit = True
        thread.join(timeout=10)

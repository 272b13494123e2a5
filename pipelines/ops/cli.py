"""``python -m pipelines ops ...``: run reports, alerts, exports (light imports: argparse and cli_common)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.cli_common import emit, positive_int


def _run_id(text: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a run id (a UUID, see `registry runs`)") from None


def _cmd(args: argparse.Namespace) -> int:
    from pipelines.ops import jobs

    if args.action == "report":
        runs = args.run_id or jobs.runs_to_report(args.pipeline, missing_only=not args.all)
        if not runs:
            print("every training/evaluation run already has its report (use --all to render them again)",
                  file=sys.stderr)
        from tqdm import tqdm

        written, failed = {}, {}
        for run_id in tqdm(runs, desc="reports", unit="run", disable=len(runs) < 2, file=sys.stderr):
            done = jobs.render_reports([run_id])
            written.update(done["written"])
            failed.update(done["failed"])
        emit({"written": written, "failed": failed})
        return 1 if failed else 0
    if args.action == "alerts":
        emit(jobs.recent_alerts(args.pipeline, args.limit))
    elif args.action == "test-alert":
        result = jobs.test_alert(args.message)
        emit(result)
        if not result["targets"]:
            print("no alert target configured: the alert is recorded only (set PIPELINES_ALERT_WEBHOOK_URL, or the "
                  "connections pipelines_alerts_webhook / pipelines_alerts_smtp)", file=sys.stderr)
        return 0 if result["notified_ok"] is not False else 1
    elif args.action == "export":
        result = jobs.export_predictions(args.pipeline, args.table, args.out)
        print(f"{result['table']}: {result['bytes']:,} bytes to {result['out']}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("ops", help="operations: run reports, alerts, prediction exports (the page is in Airflow)",
                       description="The operations page lives inside the Airflow UI (menu 'Pipelines', or "
                                   "<airflow>/pipelines-ops/). These commands do the same work without it.")
    osub = p.add_subparsers(dest="action", required=True)
    r = osub.add_parser("report", help="write the self-contained HTML report of training/evaluation runs")
    r.add_argument("--run-id", type=_run_id, nargs="+", help="these runs (default: every run without a report)")
    r.add_argument("--pipeline", help="only this pipeline's runs")
    r.add_argument("--all", action="store_true", help="render again the runs that already have a report")
    a = osub.add_parser("alerts", help="the latest alerts")
    a.add_argument("--pipeline")
    a.add_argument("--limit", type=positive_int, default=20)
    t = osub.add_parser("test-alert", help="send a test alert to the configured webhook / e-mail")
    t.add_argument("--message", default="Test alert from python -m pipelines ops test-alert")
    e = osub.add_parser("export", help="a pipeline's predictions as CSV, streamed from PostgreSQL")
    e.add_argument("--pipeline", required=True)
    e.add_argument("--table", help="serving table (default: the pipeline's first)")
    e.add_argument("--out", type=Path, help="file to write (default: stdout)")
    p.set_defaults(func=_cmd)

"""``python -m pipelines retention ...``: generate drops, run days, answer the seed's Q1, report."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from pipelines.cli_common import day, day_range, emit, non_negative_int, positive_int, share


def _run(args: argparse.Namespace) -> int:
    from pipelines.retention import jobs

    if args.action == "generate":
        from pipelines.retention.generate import RetentionDataSpec

        spec = RetentionDataSpec(start=args.start, days=args.days, installs_per_day=args.installs_per_day,
                                 existing_users=args.existing_users, seed=args.seed, bad_row_rate=args.bad_row_rate)
        result = jobs.generate(spec)
        emit({k: v for k, v in result.items() if k != "files"} | {"files": len(result["files"])})
    elif args.action == "run":
        results = jobs.run_range(args.day, day_range(args.day, args.end)[-1], args.max_bad_share)
        emit([{"day": r["load"]["day"], "events": r["load"]["rows_loaded"],
               "quarantined": r["validate"]["rows_quarantined"]} for r in results])
    elif args.action == "q1":
        from pipelines.retention.q1 import q1_csv, q1_postgres

        answer = q1_csv(args.csv, args.install_date, args.days) if args.csv else q1_postgres(args.install_date,
                                                                                              args.days)
        print(answer.describe())
    elif args.action == "report":
        emit(jobs.report(args.limit))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retention", help="retention analytics pipeline")
    rsub = p.add_subparsers(dest="action", required=True)
    g = rsub.add_parser("generate", help="write generated piwik_track drops into the data root")
    g.add_argument("--start", type=day, default=date(2017, 3, 1))
    g.add_argument("--days", type=positive_int, default=45)
    g.add_argument("--installs-per-day", type=positive_int, default=120)
    g.add_argument("--existing-users", type=non_negative_int, default=1500)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--bad-row-rate", type=share, default=0.0)
    r = rsub.add_parser("run", help="validate, load and refresh one day or a range (a backfill)")
    r.add_argument("--day", type=day, required=True)
    r.add_argument("--end", type=day)
    r.add_argument("--max-bad-share", type=share)
    q = rsub.add_parser("q1", help="installed on D and active in D+1..D+days (Postgres or a CSV export)")
    q.add_argument("--install-date", type=day, default=date(2017, 4, 1))
    q.add_argument("--days", type=positive_int, default=7)
    q.add_argument("--csv", type=Path, help="a piwik_track CSV export (uid, time, event_name at least)")
    rp = rsub.add_parser("report", help="what the pipeline has written")
    rp.add_argument("--limit", type=positive_int, default=10)
    p.set_defaults(func=_run)

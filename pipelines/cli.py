"""``python -m pipelines``: every pipeline step without Airflow (the same functions the DAG tasks call)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _cmd_migrate(args: argparse.Namespace) -> int:
    from pipelines.migrate import upgrade

    print(f"schema at revision {upgrade(revision=args.revision)}")
    return 0


def _cmd_services(args: argparse.Namespace) -> int:
    from pipelines import services

    if args.action == "stop":
        print("embedded PostgreSQL stopped" if services.stop_embedded_postgres() else "nothing was running")
        return 0
    if args.action == "pg-dsn":
        print(services.ensure_embedded_postgres())
        return 0
    # run: start the local services, run the command with them in its environment, stop them after.
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("usage: python -m pipelines services run -- COMMAND ...", file=sys.stderr)
        return 2
    def _terminate(signum, frame):  # a SIGTERM (e.g. from a supervisor) stops the services like Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    with services.local_services(stop_postgres=True) as exported:
        for key, value in exported.items():
            print(f"{key}={value}", file=sys.stderr)
        try:
            return subprocess.call(command, env=os.environ.copy())
        except KeyboardInterrupt:
            return 130


def _cmd_retention(args: argparse.Namespace) -> int:
    from pipelines.retention import jobs

    if args.action == "generate":
        from pipelines.retention.generate import RetentionDataSpec

        spec = RetentionDataSpec(start=args.start, days=args.days, installs_per_day=args.installs_per_day,
                                 existing_users=args.existing_users, seed=args.seed, bad_row_rate=args.bad_row_rate)
        result = jobs.generate(spec)
        _print({k: v for k, v in result.items() if k != "files"} | {"files": len(result["files"])})
    elif args.action == "run":
        end = args.end or args.day
        results = jobs.run_range(args.day, end, args.max_bad_share)
        _print([{"day": r["load"]["day"], "events": r["load"]["rows_loaded"],
                 "quarantined": r["validate"]["rows_quarantined"]} for r in results])
    elif args.action == "q1":
        from pipelines.retention.q1 import q1_csv, q1_postgres

        if args.csv:
            answer = q1_csv(args.csv, args.install_date, args.days)
        else:
            answer = q1_postgres(args.install_date, args.days)
        print(answer.describe())
    elif args.action == "report":
        _print(jobs.report(args.limit))
    return 0


def _cmd_recs(args: argparse.Namespace) -> int:
    from pipelines.recs import jobs

    if args.action == "generate":
        result = jobs.generate(args.day, seed=args.seed, n_users=args.users, n_artists=args.artists,
                               start=args.start)
        _print(result)
        return 0
    params = {k: getattr(args, k) for k in ("k_neighbours", "n_recs", "weighting", "profile_weight",
                                            "min_history", "neighbours", "svd_dim")}
    if args.action == "run":
        from datetime import timedelta

        end = args.end or args.day
        days = [args.day + timedelta(days=i) for i in range((end - args.day).days + 1)]
        for day in days:
            result = jobs.run_day(day, params, max_bad_share=args.max_bad_share, shard_users=args.shard_users,
                                  evaluate_users=args.eval_users, keep=args.keep)
            _print({"day": day, "version": result["build"]["version"], "publish": result["publish"],
                    "evaluate": result["evaluate"] and {k: round(v["ndcg_at_10"], 4)
                                                        for k, v in result["evaluate"]["metrics"].items()},
                    "cleanup": result["cleanup"]})
    elif args.action == "evaluate":
        result = jobs.evaluate(args.day, params, args.eval_users)
        _print({"version": result["version"], "neighbour_recall": result["neighbour_recall"],
                "report": result["report"], "metrics": result["metrics"]})
    elif args.action == "cleanup":
        _print(jobs.cleanup(args.keep))
    return 0


def _cmd_sociodemo(args: argparse.Namespace) -> int:
    from pipelines.sociodemo import jobs

    if args.action == "generate":
        result = jobs.generate(seed=args.seed, n_users=args.users, days=args.days, start=args.start,
                               bad_row_rate=args.bad_row_rate)
        _print({k: v for k, v in result.items() if k not in ("files",)})
    elif args.action == "run":
        from datetime import timedelta

        end = args.end or args.day
        for i in range((end - args.day).days + 1):
            day = args.day + timedelta(days=i)
            if args.no_score:
                _print({"validate": jobs.validate(day, args.max_bad_share),
                        "histories": jobs.update_histories(day)})
            else:
                _print(jobs.run_day(day, args.max_bad_share, args.model))
    elif args.action == "train":
        jobs.validate_targets()
        as_of = args.as_of or jobs.latest_accepted_day()
        jobs.update_histories(as_of, mode="full")
        result = jobs.train(as_of, args.models)
        _print({k: v for k, v in result.items() if k in ("version", "table", "runs", "report")} or result)
    elif args.action == "promote":
        _print(jobs.promote(args.model, args.run_id))
    elif args.action == "score":
        _print(jobs.score(args.day, args.model))
    return 0


def _cmd_registry(args: argparse.Namespace) -> int:
    from pipelines import registry

    if args.action == "runs":
        _print(registry.list_runs(args.pipeline, args.limit))
    elif args.action == "compare":
        _print(registry.compare_models(args.pipeline, args.metric, args.segment))
    elif args.action == "promote":
        registry.promote(args.pipeline, args.model_name, args.run_id)
        print(f"{args.pipeline}/{args.model_name} production -> {args.run_id}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    return run_demo(days=args.days, installs_per_day=args.installs_per_day, recs_users=args.recs_users,
                    sociodemo_users=args.sociodemo_users)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="group", required=True)

    p = sub.add_parser("migrate", help="apply schema migrations")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("services", help="local stand-ins: embedded PostgreSQL, moto DynamoDB")
    p.add_argument("action", choices=["run", "stop", "pg-dsn"])
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_services)

    p = sub.add_parser("retention", help="retention analytics pipeline")
    rsub = p.add_subparsers(dest="action", required=True)
    g = rsub.add_parser("generate", help="write generated piwik_track drops into the data root")
    g.add_argument("--start", type=date.fromisoformat, default=date(2017, 3, 1))
    g.add_argument("--days", type=int, default=45)
    g.add_argument("--installs-per-day", type=int, default=120)
    g.add_argument("--existing-users", type=int, default=1500)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--bad-row-rate", type=float, default=0.0)
    r = rsub.add_parser("run", help="validate, load and refresh one day or a range (a backfill)")
    r.add_argument("--day", type=date.fromisoformat, required=True)
    r.add_argument("--end", type=date.fromisoformat)
    r.add_argument("--max-bad-share", type=float)
    q = rsub.add_parser("q1", help="installed on D and active in D+1..D+days (Postgres or a CSV export)")
    q.add_argument("--install-date", type=date.fromisoformat, default=date(2017, 4, 1))
    q.add_argument("--days", type=int, default=7)
    q.add_argument("--csv", type=Path, help="a piwik_track CSV export (uid, time, event_name at least)")
    rp = rsub.add_parser("report", help="what the pipeline has written")
    rp.add_argument("--limit", type=int, default=10)
    p.set_defaults(func=_cmd_retention)

    p = sub.add_parser("recs", help="user-user recommendations to DynamoDB")
    rsub = p.add_subparsers(dest="action", required=True)
    g = rsub.add_parser("generate", help="write a generated Last.fm-format snapshot into the data root")
    g.add_argument("--day", type=date.fromisoformat, required=True)
    g.add_argument("--users", type=int, default=20_000)
    g.add_argument("--artists", type=int, default=20_000)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--start", type=date.fromisoformat, help="first day of the generated world (default: --day)")
    for name, help_text in (("run", "validate, fit, recommend, write, publish, evaluate, clean up (day or range)"),
                            ("evaluate", "held-out evaluation only")):
        r = rsub.add_parser(name, help=help_text)
        r.add_argument("--day", type=date.fromisoformat, required=True)
        r.add_argument("--k-neighbours", type=int)
        r.add_argument("--n-recs", type=int)
        r.add_argument("--weighting", choices=["bm25", "log", "tfidf", "none"])
        r.add_argument("--profile-weight", type=float)
        r.add_argument("--min-history", type=int)
        r.add_argument("--neighbours", choices=["approx", "exact"])
        r.add_argument("--svd-dim", type=int)
        r.add_argument("--eval-users", type=int, default=5000)
        if name == "run":
            r.add_argument("--end", type=date.fromisoformat)
            r.add_argument("--max-bad-share", type=float)
            r.add_argument("--shard-users", type=int, default=50_000)
            r.add_argument("--keep", type=int, default=2)
    c = rsub.add_parser("cleanup", help="delete versions older than the kept ones")
    c.add_argument("--keep", type=int, default=2)
    p.set_defaults(func=_cmd_recs)

    p = sub.add_parser("sociodemo", help="socio-demographic prediction (sex, age class)")
    ssub = p.add_subparsers(dest="action", required=True)
    g = ssub.add_parser("generate", help="write generated Rutube-format events, videos and targets")
    g.add_argument("--users", type=int, default=20_000)
    g.add_argument("--days", type=int, default=14)
    g.add_argument("--start", type=date.fromisoformat, default=date(2024, 6, 1))
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--bad-row-rate", type=float, default=0.001)
    r = ssub.add_parser("run", help="validate, update histories and score one day or a range")
    r.add_argument("--day", type=date.fromisoformat, required=True)
    r.add_argument("--end", type=date.fromisoformat)
    r.add_argument("--max-bad-share", type=float)
    r.add_argument("--model", help="score with this promoted model (default: the latest promotion)")
    r.add_argument("--no-score", action="store_true", help="only validate and update histories")
    t = ssub.add_parser("train", help="train and evaluate every model as of a day (no promotion)")
    t.add_argument("--as-of", type=date.fromisoformat)
    t.add_argument("--models", nargs="+", default=["topclass", "catboost", "deepsets"])
    pr = ssub.add_parser("promote", help="explicitly promote a trained model (latest run unless --run-id)")
    pr.add_argument("--model", required=True)
    pr.add_argument("--run-id")
    sc = ssub.add_parser("score", help="score every user as of a day with the promoted model")
    sc.add_argument("--day", type=date.fromisoformat, required=True)
    sc.add_argument("--model")
    p.set_defaults(func=_cmd_sociodemo)

    p = sub.add_parser("registry", help="the run registry")
    gsub = p.add_subparsers(dest="action", required=True)
    rr = gsub.add_parser("runs")
    rr.add_argument("--pipeline")
    rr.add_argument("--limit", type=int, default=20)
    rc = gsub.add_parser("compare")
    rc.add_argument("--pipeline", required=True)
    rc.add_argument("--metric", required=True)
    rc.add_argument("--segment", default="", help="e.g. model=popularity (default: each run's own model)")
    rm = gsub.add_parser("promote")
    rm.add_argument("--pipeline", required=True)
    rm.add_argument("--model-name", required=True)
    rm.add_argument("--run-id", required=True)
    p.set_defaults(func=_cmd_registry)

    p = sub.add_parser("demo", help="everything end to end on embedded services, through Airflow")
    p.add_argument("--days", type=int, default=40)
    p.add_argument("--installs-per-day", type=int, default=150)
    p.add_argument("--recs-users", type=int, default=20_000)
    p.add_argument("--sociodemo-users", type=int, default=5_000)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)

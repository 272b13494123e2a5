"""``python -m pipelines sociodemo ...``: generate, run days, train, promote, score."""

from __future__ import annotations

import argparse
from datetime import date

from pipelines.cli_common import day, day_range, emit, positive_int, share

MODELS = ("topclass", "catboost", "deepsets")


def _run(args: argparse.Namespace) -> int:
    from pipelines.sociodemo import jobs

    if args.action == "generate":
        result = jobs.generate(seed=args.seed, n_users=args.users, days=args.days, start=args.start,
                               bad_row_rate=args.bad_row_rate)
        emit({k: v for k, v in result.items() if k not in ("files",)})
    elif args.action == "run":
        for d in day_range(args.day, args.end):
            if args.no_score:
                emit({"validate": jobs.validate(d, args.max_bad_share), "histories": jobs.update_histories(d)})
            else:
                emit(jobs.run_day(d, args.max_bad_share, args.model))
    elif args.action == "train":
        jobs.validate_targets()
        as_of = args.as_of or jobs.latest_accepted_day()
        jobs.update_histories(as_of, mode="full")
        result = jobs.train(as_of, args.models)
        emit({k: v for k, v in result.items() if k in ("version", "table", "runs", "report")} or result)
    elif args.action == "promote":
        emit(jobs.promote(args.model, args.run_id))
    elif args.action == "score":
        emit(jobs.score(args.day, args.model))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sociodemo", help="socio-demographic prediction (sex, age class)")
    ssub = p.add_subparsers(dest="action", required=True)
    g = ssub.add_parser("generate", help="write generated Rutube-format events, videos and targets")
    g.add_argument("--users", type=positive_int, default=20_000)
    g.add_argument("--days", type=positive_int, default=14)
    g.add_argument("--start", type=day, default=date(2024, 6, 1))
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--bad-row-rate", type=share, default=0.001)
    r = ssub.add_parser("run", help="validate, update histories and score one day or a range")
    r.add_argument("--day", type=day, required=True)
    r.add_argument("--end", type=day)
    r.add_argument("--max-bad-share", type=share)
    r.add_argument("--model", choices=MODELS, help="score with this promoted model (default: the latest promotion)")
    r.add_argument("--no-score", action="store_true", help="only validate and update histories")
    t = ssub.add_parser("train", help="train and evaluate every model as of a day (no promotion)")
    t.add_argument("--as-of", type=day)
    t.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    pr = ssub.add_parser("promote", help="explicitly promote a trained model (latest run unless --run-id)")
    pr.add_argument("--model", required=True, choices=MODELS)
    pr.add_argument("--run-id")
    sc = ssub.add_parser("score", help="score every user as of a day with the promoted model")
    sc.add_argument("--day", type=day, required=True)
    sc.add_argument("--model", choices=MODELS)
    p.set_defaults(func=_run)

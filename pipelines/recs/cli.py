"""``python -m pipelines recs ...``: generate snapshots, run days, evaluate, clean up old versions."""

from __future__ import annotations

import argparse

from pipelines.cli_common import day, day_range, emit, non_negative_int, positive_int, share

_PARAMS = ("k_neighbours", "n_recs", "weighting", "profile_weight", "min_history", "neighbours", "svd_dim")


def _run(args: argparse.Namespace) -> int:
    from pipelines.recs import jobs

    if args.action == "generate":
        emit(jobs.generate(args.day, seed=args.seed, n_users=args.users, n_artists=args.artists, start=args.start))
        return 0
    if args.action == "cleanup":
        emit(jobs.cleanup(args.keep))
        return 0
    params = {k: getattr(args, k) for k in _PARAMS}
    if args.action == "run":
        for d in day_range(args.day, args.end):
            result = jobs.run_day(d, params, max_bad_share=args.max_bad_share, shard_users=args.shard_users,
                                  evaluate_users=args.eval_users, keep=args.keep)
            evaluated = result["evaluate"]
            emit({"day": d, "version": result["build"]["version"], "publish": result["publish"],
                  "evaluate": evaluated and evaluated.get("metrics") and {
                      k: round(v["ndcg_at_10"], 4) for k, v in evaluated["metrics"].items()},
                  "cleanup": result["cleanup"]})
    elif args.action == "evaluate":
        result = jobs.evaluate(args.day, params, args.eval_users)
        emit({k: result[k] for k in ("version", "skipped", "reason", "neighbour_recall", "report", "metrics")
              if k in result})
    return 0


def _fraction_0_99(text: str) -> float:
    value = share(text)
    if value > 0.99:
        raise argparse.ArgumentTypeError(f"{value} must be at most 0.99")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recs", help="user-user recommendations to DynamoDB")
    rsub = p.add_subparsers(dest="action", required=True)
    g = rsub.add_parser("generate", help="write a generated Last.fm-format snapshot into the data root")
    g.add_argument("--day", type=day, required=True)
    g.add_argument("--users", type=positive_int, default=20_000)
    g.add_argument("--artists", type=positive_int, default=20_000)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--start", type=day, help="first day of the generated world (default: --day)")
    for name, help_text in (("run", "validate, fit, recommend, write, publish, evaluate, clean up (day or range)"),
                            ("evaluate", "held-out evaluation only")):
        r = rsub.add_parser(name, help=help_text)
        r.add_argument("--day", type=day, required=True)
        r.add_argument("--k-neighbours", type=positive_int)
        r.add_argument("--n-recs", type=positive_int)
        r.add_argument("--weighting", choices=["bm25", "log", "tfidf", "none"])
        r.add_argument("--profile-weight", type=_fraction_0_99)
        r.add_argument("--min-history", type=positive_int)
        r.add_argument("--neighbours", choices=["approx", "exact"])
        r.add_argument("--svd-dim", type=positive_int)
        r.add_argument("--eval-users", type=non_negative_int, default=5000)
        if name == "run":
            r.add_argument("--end", type=day)
            r.add_argument("--max-bad-share", type=share)
            r.add_argument("--shard-users", type=positive_int, default=50_000)
            r.add_argument("--keep", type=positive_int, default=2)
    c = rsub.add_parser("cleanup", help="delete versions older than the kept ones")
    c.add_argument("--keep", type=positive_int, default=2)
    p.set_defaults(func=_run)

"""``python -m pipelines engagement ...``: generate, convert, preview, train, promote, score, run, report."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from pipelines.cli_common import day, day_range, emit, non_negative_int, positive_int, share

MODELS = ("linear", "catboost", "minilm", "neural")
PROMOTABLE = ("mean", "author_mean", *MODELS)


def _flat_params(args: argparse.Namespace) -> dict:
    from pipelines.engagement import jobs

    flat = {"linear_epochs": args.linear_epochs, "catboost_iterations": args.catboost_iterations,
            "catboost_sample_rows": args.catboost_sample_rows, "minilm_sample_rows": args.minilm_sample_rows,
            "neural_epochs": args.neural_epochs, "neural_workers": args.neural_workers}
    return jobs.model_params({k: v for k, v in flat.items() if v is not None})


def _run(args: argparse.Namespace) -> int:
    from pipelines.engagement import jobs

    if args.action == "generate":
        emit(jobs.generate(start=args.start, days=args.days, history_days=args.history_days,
                           posts_per_day=args.posts_per_day, n_authors=args.authors, seed=args.seed,
                           bad_row_rate=args.bad_row_rate, history_name=args.history_name,
                           eol="\r\n" if args.crlf else "\n", bom=args.bom, truth=not args.no_truth, progress=True))
    elif args.action == "convert":
        if args.pending or args.file:
            names = jobs.pending_history_files(args.reconvert) if args.pending else [args.file]
            _progress_each(names, "history files", lambda n: jobs.convert_file(n, args.max_bad_share, progress=True))
        else:
            if args.day is None:
                from pipelines.errors import UsageError

                raise UsageError("name --day (and --end), --file NAME or --pending")
            days = day_range(args.day, args.end)
            _progress_each(days, "days", lambda d: jobs.convert_day(d, args.max_bad_share))
    elif args.action == "preview":
        from pipelines.engagement.convert import preview

        result = preview(args.path, args.max_bad_share if args.max_bad_share is not None else 0.05)
        emit({k: v for k, v in result.as_dict().items() if k not in ("run_id", "staged_uri")})
        return 0 if result.accepted else 3
    elif args.action == "train":
        result = jobs.train(args.as_of, args.models, _flat_params(args), seed=args.seed,
                            valid_months=args.valid_months, test_months=args.test_months,
                            train_months=args.train_months or None, eval_rows=args.eval_rows,
                            valid_rows=args.valid_rows)
        emit({k: result[k] for k in ("version", "as_of", "split", "rows", "runs", "report")})
        from pipelines.demo import table

        print(table(jobs.comparison()))
    elif args.action == "promote":
        emit(jobs.promote(args.model, args.run_id))
    elif args.action == "score":
        _progress_each(day_range(args.day, args.end), "days", lambda d: jobs.score(d, args.model))
    elif args.action == "run":
        _progress_each(day_range(args.day, args.end), "days",
                       lambda d: jobs.run_day(d, args.max_bad_share, args.model))
    elif args.action == "report":
        from pipelines.demo import table

        print(table(jobs.comparison(args.versions)))
    return 0


def _progress_each(items: list, what: str, step) -> None:
    """Run ``step`` on each item with a progress bar, printing each result as JSON."""
    from tqdm import tqdm

    for item in tqdm(items, desc=f"engagement {what}", unit=what.split()[-1].rstrip("s"), disable=None):
        emit(step(item))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engagement", help="engagement regression (up-votes from title and metadata)")
    esub = p.add_subparsers(dest="action", required=True)

    g = esub.add_parser("generate", help="write Eluvio-format posts (a historical file, then daily drops)")
    g.add_argument("--start", type=day, default=date(2016, 1, 1))
    g.add_argument("--days", type=positive_int, default=180)
    g.add_argument("--history-days", type=non_negative_int,
                   help="days written as one historical file (default: all); the rest become daily drops")
    g.add_argument("--history-name", default="history.csv")
    g.add_argument("--posts-per-day", type=float, default=250.0)
    g.add_argument("--authors", type=positive_int, default=4_000)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--bad-row-rate", type=share, default=0.0)
    g.add_argument("--crlf", action="store_true", help="CRLF line ends")
    g.add_argument("--bom", action="store_true", help="a UTF-8 byte-order mark")
    g.add_argument("--no-truth", action="store_true", help="skip the truth files (no oracle; faster)")

    c = esub.add_parser("convert", help="convert days' drops, one historical file, or every pending one")
    c.add_argument("--day", type=day)
    c.add_argument("--end", type=day)
    c.add_argument("--file", help="a file name under engagement/raw/history/")
    c.add_argument("--pending", action="store_true", help="every historical file not converted yet (or changed)")
    c.add_argument("--reconvert", action="store_true", help="with --pending: convert every file again")
    c.add_argument("--max-bad-share", type=share)

    v = esub.add_parser("preview", help="convert a local CSV into a temporary folder and count rows by reason "
                                        "(no database, nothing kept); exit 3 when it would be rejected")
    v.add_argument("path", type=Path)
    v.add_argument("--max-bad-share", type=share)

    t = esub.add_parser("train", help="train and compare every model on a time split (no promotion)")
    t.add_argument("--as-of", type=day, help="default: the last day of accepted posts")
    t.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--valid-months", type=positive_int, default=1)
    t.add_argument("--test-months", type=positive_int, default=1)
    t.add_argument("--train-months", type=non_negative_int, default=0, help="0 = every earlier month")
    t.add_argument("--eval-rows", type=positive_int, default=20_000, help="test sample size (every model)")
    t.add_argument("--valid-rows", type=positive_int, default=20_000, help="validation sample size")
    t.add_argument("--linear-epochs", type=positive_int)
    t.add_argument("--catboost-iterations", type=positive_int)
    t.add_argument("--catboost-sample-rows", type=positive_int)
    t.add_argument("--minilm-sample-rows", type=positive_int)
    t.add_argument("--neural-epochs", type=positive_int)
    t.add_argument("--neural-workers", type=non_negative_int)

    pr = esub.add_parser("promote", help="explicitly promote a trained model (its latest run unless --run-id)")
    pr.add_argument("--model", required=True, choices=PROMOTABLE)
    pr.add_argument("--run-id")

    s = esub.add_parser("score", help="score a day's accepted posts with the promoted model")
    s.add_argument("--day", type=day, required=True)
    s.add_argument("--end", type=day)
    s.add_argument("--model", choices=PROMOTABLE, help="this promoted model (default: the latest promotion)")

    r = esub.add_parser("run", help="convert and score one day or a range (what the daily DAG does)")
    r.add_argument("--day", type=day, required=True)
    r.add_argument("--end", type=day)
    r.add_argument("--max-bad-share", type=share)
    r.add_argument("--model", choices=PROMOTABLE)

    rp = esub.add_parser("report", help="the latest training comparison from the run registry")
    rp.add_argument("--versions", type=positive_int, default=1)
    p.set_defaults(func=_run)

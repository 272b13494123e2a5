"""``python -m pipelines keystrokes ...``: generate, serve, ingest, analyse, train, compare, promote, predict, enrol.

The same functions the DAGs' tasks call (:mod:`pipelines.keystrokes.jobs`). ``train``, ``analyse``, ``predict``
and ``enrol`` ingest their URL first (cached: the same URL is not downloaded twice), as the DAGs do.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.cli_common import emit, fraction, positive_int, share
from pipelines.keystrokes.schema import DEFAULT_MAX_PAGES, DEFAULT_MIN_SAMPLES, MAX_PAGES_LIMIT, MODEL_TYPES


def _rows(text: str) -> int:
    value = positive_int(text)
    if value > 1000:
        raise argparse.ArgumentTypeError(f"{value} is more than 1000 rows (seed 001's limit)")
    return value


def _max_pages(text: str) -> int:
    value = positive_int(text)
    if value > MAX_PAGES_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} is more than {MAX_PAGES_LIMIT:,} pages")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"{value} must be more than 0 and at most 86400 seconds")
    return value


def _page_value(text: str) -> tuple[str, str]:
    page, sep, value = text.rpartition(":")
    if not sep or not page or not value:
        raise argparse.ArgumentTypeError(f"{text!r} is not PAGE:VALUE (a page name or #index, then a number)")
    return page, value


def _table(rows: list[dict], columns: list[str]) -> str:
    from pipelines.demo import table

    return table([{c: ("" if r.get(c) is None else round(r[c], 4) if isinstance(r.get(c), float) else r[c])
                   for c in columns} for r in rows], columns)


def _ingest_args(args: argparse.Namespace) -> dict:
    return {"max_pages": args.max_pages, "refresh": args.refresh, "read_timeout": args.timeout,
            "retries": args.retries}


def _serve(args: argparse.Namespace) -> int:
    import time

    from pipelines.keystrokes import jobs
    from pipelines.keystrokes.server import Faults, serving

    name = args.dataset
    if name is None:
        made = jobs.generate(n_users=args.users, mean_samples=args.mean_samples, seed=args.seed,
                             bad_rate=args.bad_rate)
        name = made["name"]
        print(f"generated {made['users']} users, {made['train_attempts']} training attempts on {made['pages']} "
              f"pages, {made['test_attempts']} test attempts: {made['folder']}", file=sys.stderr)
    faults = Faults(fail={p: int(v) for p, v in args.fail_page}, fail_every=args.fail_every, loop=args.loop,
                    malformed=set(args.malformed), no_label=set(args.no_label), no_next=set(args.no_next),
                    dangling_next=set(args.dangling_next), delay={p: float(v) for p, v in args.delay})
    with serving(jobs.generated_folder(name), faults, host=args.host, port=args.port) as server:
        print(f"training pages: {server.train_url}\ntest document:  {server.test_url}\n(Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print(f"served {sum(server.hits.values())} requests", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    from pipelines.keystrokes import jobs

    if args.action == "generate":
        emit(jobs.generate(n_users=args.users, mean_samples=args.mean_samples, test_share=args.test_share,
                           bad_rate=args.bad_rate, split_page_share=args.split_page_share, seed=args.seed))
    elif args.action == "serve":
        return _serve(args)
    elif args.action == "ingest":
        emit(jobs.ingest(args.kind, args.url, args.max_bad_share, args.min_samples, **_ingest_args(args)))
    elif args.action == "analyse":
        jobs.ingest("train", args.url, args.max_bad_share, args.min_samples, **_ingest_args(args))
        result = jobs.analyse(args.url, args.rows)
        print(_table(result.pop("preview"), ["user_label", "n_events", "total_s", "chars_per_s", "backspaces"]))
        emit({k: v for k, v in result.items() if k != "feature_columns"})
    elif args.action == "train":
        jobs.check_model_name(args.model_name)  # before any work
        jobs.ingest("train", args.url, args.max_bad_share, args.min_samples, **_ingest_args(args))
        params = jobs.model_params({k: getattr(args, k) for k in jobs.BUDGET_PARAMS})
        result = jobs.train(args.url, args.models, args.model_name, args.holdout, args.seed, params)
        rows = [{"model": m, **v} for m, v in result["table"].items()]
        print(_table(rows, ["model", "accuracy", "top3_accuracy", "macro_f1", "eer", "eer_global"]))
        if args.promote:
            result["promoted"] = jobs.promote(args.model_name, args.promote, training=result, by="cli")
        emit({k: v for k, v in result.items() if k != "table"})
    elif args.action == "compare":
        if args.history or not args.url:
            rows = jobs.history(args.model_name, args.limit)
            columns = ["model_name", "model_version", "type", "accuracy", "top3_accuracy", "macro_f1", "eer",
                       "chance_accuracy", "oracle_accuracy", "promoted", "finished_at"]
        else:
            result = jobs.compare(args.url, args.model_name, args.holdout, args.seed, args.limit)
            rows = result["versions"]
            columns = ["model_name", "version", "type", "n_eval", "excluded_seen", "coverage", "accuracy",
                       "top3_accuracy", "macro_f1", "eer"]
            print(f"holdout: {result['holdout']} attempts of {result['partition']}; report: {result['report']}")
            for s in result["skipped"]:
                print(f"not compared: {s['version']}: {s['why']}")
        if args.json:
            emit(rows)
        else:
            print(_table(rows, columns))
    elif args.action == "promote":
        emit(jobs.promote(args.model_name, args.type, args.version, args.run_id, by="cli"))
    elif args.action == "predict":
        jobs.ingest("test", args.url, args.max_bad_share, **_ingest_args(args))
        emit(jobs.predict(args.url, args.model_name, args.version))
    elif args.action == "enrol":
        jobs.ingest("train", args.url, args.max_bad_share, args.min_samples, **_ingest_args(args))
        emit(jobs.enrol(args.url, args.model_name, args.version, args.min_samples))
    return 0


def _fetch_options(p: argparse.ArgumentParser, min_samples: bool = True) -> None:
    p.add_argument("--url", required=True, help="http(s):// URL, file:// URL, or a path in the data root")
    p.add_argument("--max-bad-share", type=share, help="reject past this share of bad attempts (default: "
                                                       "PIPELINES_MAX_BAD_SHARE or 0.05)")
    if min_samples:
        p.add_argument("--min-samples", type=positive_int, default=DEFAULT_MIN_SAMPLES,
                       help="users with fewer valid attempts are dropped (quarantined as too_few_samples)")
    p.add_argument("--max-pages", type=_max_pages, default=DEFAULT_MAX_PAGES)
    p.add_argument("--refresh", action="store_true", help="download again even if the URL is cached")
    p.add_argument("--timeout", type=_seconds, default=30.0, help="HTTP read timeout, seconds")
    p.add_argument("--retries", type=int, choices=range(0, 11), default=4, metavar="0..10",
                   help="HTTP retries (backoff, on 5xx and connection errors)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keystrokes", help="keystroke user identification (paged JSON, typing models)")
    ksub = p.add_subparsers(dest="action", required=True)

    g = ksub.add_parser("generate", help="write generated pages, a test document and their truth")
    g.add_argument("--users", type=positive_int, default=300)
    g.add_argument("--mean-samples", type=float, default=24.0)
    g.add_argument("--test-share", type=share, default=0.1)
    g.add_argument("--bad-rate", type=share, default=0.01)
    g.add_argument("--split-page-share", type=share, default=0.1)
    g.add_argument("--seed", type=int, default=42)

    s = ksub.add_parser("serve", help="serve generated pages over HTTP on loopback, with failure switches",
                        description="PAGE is a page's file name or #index in the chain (#0 = the first page).")
    s.add_argument("--dataset", help="a generated dataset's name (default: generate one with --users/--seed)")
    s.add_argument("--users", type=positive_int, default=300)
    s.add_argument("--mean-samples", type=float, default=24.0)
    s.add_argument("--bad-rate", type=share, default=0.01)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0, help="0 = a free port")
    s.add_argument("--fail-page", type=_page_value, action="append", default=[], metavar="PAGE:N",
                   help="answer HTTP 500 N times before serving PAGE")
    s.add_argument("--fail-every", type=int, default=0, metavar="N", help="answer 500 N times before every page")
    s.add_argument("--loop", action="store_true", help="the last page links back to the first")
    s.add_argument("--malformed", action="append", default=[], metavar="PAGE", help="serve PAGE cut in half")
    s.add_argument("--no-label", action="append", default=[], metavar="PAGE", help="serve PAGE without user_label")
    s.add_argument("--no-next", action="append", default=[], metavar="PAGE", help="serve PAGE without next")
    s.add_argument("--dangling-next", action="append", default=[], metavar="PAGE",
                   help="PAGE's next names a page that does not exist")
    s.add_argument("--delay", type=_page_value, action="append", default=[], metavar="PAGE:SECONDS")

    i = ksub.add_parser("ingest", help="validate a training set or test document (quarantine, status)")
    i.add_argument("--kind", choices=["train", "test"], default="train")
    _fetch_options(i)

    a = ksub.add_parser("analyse", help="seed 001's Analyse page: the first N attempts with their features")
    _fetch_options(a)
    a.add_argument("--rows", type=_rows, default=100, help="attempts to show (1..1000)")

    t = ksub.add_parser("train", help="train and compare models on a held-out split (no promotion unless asked)")
    _fetch_options(t)
    t.add_argument("--models", nargs="+", choices=MODEL_TYPES, default=list(MODEL_TYPES))
    t.add_argument("--model-name", default="keystrokes", help="the name versions are kept and promoted under")
    t.add_argument("--holdout", type=fraction, default=0.2, help="held-out share of each user's attempts")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--logreg-max-iter", type=positive_int)
    t.add_argument("--linear-svm-c", type=float)
    t.add_argument("--adaboost-estimators", type=positive_int)
    t.add_argument("--random-forest-trees", type=positive_int)
    t.add_argument("--catboost-iterations", type=positive_int)
    t.add_argument("--gru-epochs", type=positive_int)
    t.add_argument("--embedding-epochs", type=positive_int)
    t.add_argument("--time-cap-s", type=_seconds, help="safety cap on each network's training time")
    t.add_argument("--promote", choices=MODEL_TYPES, help="promote this model type of this training")

    c = ksub.add_parser("compare", help="every version: as trained (--history) or re-evaluated on --url's holdout")
    c.add_argument("--url", help="re-evaluate past versions on this (ingested) training set's holdout")
    c.add_argument("--history", action="store_true", help="the registry's metrics of every version")
    c.add_argument("--model-name")
    c.add_argument("--holdout", type=fraction, default=0.2)
    c.add_argument("--seed", type=int, default=42)
    c.add_argument("--limit", type=positive_int, default=20)
    c.add_argument("--json", action="store_true")

    pr = ksub.add_parser("promote", help="explicitly promote a trained version")
    pr.add_argument("--model-name", default="keystrokes")
    which = pr.add_mutually_exclusive_group(required=True)
    which.add_argument("--type", choices=MODEL_TYPES, help="the latest training of this model type")
    which.add_argument("--version")
    which.add_argument("--run-id")

    pd_ = ksub.add_parser("predict", help="predict a test document: final_pred.json, the CSV, Postgres")
    _fetch_options(pd_, min_samples=False)
    pd_.add_argument("--model-name", default="keystrokes")
    pd_.add_argument("--version", help="default: the promoted version")

    e = ksub.add_parser("enrol", help="enrol new users into an embedding model without retraining")
    _fetch_options(e)
    e.add_argument("--model-name", default="keystrokes")
    e.add_argument("--version", help="default: the promoted version")
    e.set_defaults(min_samples=2)
    p.set_defaults(func=_run)

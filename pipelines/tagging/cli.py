"""``python -m pipelines tagging ...``: generate articles, validate, segment, train, promote, tag, report."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime
from pathlib import Path

from pipelines.cli_common import day, day_range, fraction, non_negative_int, positive_int, share
from pipelines.tagging.schema import DEFAULT_VIEWS, FAMILIES, VIEWS, model_names


def emit(obj) -> None:
    """The command's result as JSON, Chinese text readable (not ``\\uXXXX`` escapes)."""
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


def _grid(text: str) -> dict:
    """A grid as JSON, or ``@file.json``: ``{"seed_rf": {"forest__n_estimators": [100, 300]}}``."""
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        grid = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"--grid is not JSON (or @file.json): {exc}") from None
    if not isinstance(grid, dict):
        raise argparse.ArgumentTypeError("--grid must be a JSON object: {family: {parameter: [values]}}")
    return grid


def _model(text: str) -> str:
    names = model_names()
    if text not in names:
        raise argparse.ArgumentTypeError(f"{text!r} is not a tagging model; choose one of {names}")
    return text


def _train(args: argparse.Namespace) -> dict:
    from pipelines.tagging import jobs

    params = {"catboost": {"iterations": args.catboost_iterations}} if args.catboost_iterations else {}
    config = jobs.train_config(families=args.models, views=args.views, grid=args.grid, params=params,
                               cv_folds=args.cv_folds, holdout_share=args.holdout, seed=args.seed,
                               threshold=args.threshold)  # checked before any work: a typo fails at once
    if not args.no_validate:
        jobs.validate_corpus(args.max_bad_share)
    jobs.segment("corpus", workers=args.workers, progress=True)
    as_of = args.as_of or datetime.now(UTC).date()
    result = jobs.train(as_of, config, progress=True)
    if args.promote:
        name = args.promote
        result["promoted"] = jobs.promote(name, None if name == "best" else result["runs"][name],
                                          version=result["version"], by="cli")
    return result


def _run(args: argparse.Namespace) -> int:
    from pipelines.tagging import jobs

    if args.action == "generate":
        result = jobs.generate(seed=args.seed, corpus_articles=args.corpus_articles, start=args.start,
                               days=args.days, daily_articles=args.daily_articles, bad_rate=args.bad_rate,
                               label_noise=args.label_noise, two_tag_share=args.two_tag_share,
                               topic_rate=args.topic_rate)
        emit({k: v for k, v in result.items() if k != "files"} | {"files": len(result["files"])})
    elif args.action == "validate":
        if args.corpus:
            emit(jobs.validate_corpus(args.max_bad_share))
        else:
            emit([jobs.validate(d, args.max_bad_share) for d in day_range(args.day, args.end)])
    elif args.action == "segment":
        partitions = ["corpus"] if args.corpus else day_range(args.day, args.end)
        emit([jobs.segment(p, workers=args.workers, progress=True) for p in partitions])
    elif args.action == "segmentation-quality":
        result = jobs.segmentation_quality()
        emit({k: result[k] for k in ("table", "utterances", "planted", "uri")})
    elif args.action == "train":
        emit(_train(args))
    elif args.action == "promote":
        emit(jobs.promote(args.model, args.run_id, args.version))
    elif args.action == "tag":
        emit([jobs.tag(d, args.model, progress=True) for d in day_range(args.day, args.end)])
    elif args.action == "run":
        emit([jobs.run_day(d, args.max_bad_share, args.model, progress=True) for d in day_range(args.day, args.end)])
    elif args.action == "show":
        emit(jobs.tagged_articles(args.day, args.limit))
    elif args.action == "report":
        emit(jobs.report(args.limit))
    elif args.action == "cache":
        from pipelines.tagging.segment import SegmentCache

        cache = SegmentCache()
        emit(cache.compact() if args.compact else {"segmenter": cache.segmenter, "parts": len(cache.parts()),
                                                   "articles": cache.size()})
    return 0


def _partition_args(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--day", type=day, help="a day's drop (tagging/raw/dt=DAY/)")
    which.add_argument("--corpus", action="store_true", help="the labelled corpus (tagging/raw/corpus/)")
    parser.add_argument("--end", type=day, help="with --day: every day through this one")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tagging", help="Cantonese article tagging (pycantonese words, grid-searched models)")
    tsub = p.add_subparsers(dest="action", required=True)

    g = tsub.add_parser("generate", help="write generated Cantonese articles (HKCanCor-based) with planted truth")
    g.add_argument("--corpus-articles", type=positive_int, default=600)
    g.add_argument("--days", type=positive_int, default=3)
    g.add_argument("--daily-articles", type=positive_int, default=60)
    g.add_argument("--start", type=day, default=date(2024, 6, 3))
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--bad-rate", type=share, default=0.0, help="share of planted bad rows per file")
    g.add_argument("--label-noise", type=share, default=0.04)
    g.add_argument("--two-tag-share", type=share, default=0.15)
    g.add_argument("--topic-rate", type=share, default=0.5, help="share of nouns replaced by topic words")

    v = tsub.add_parser("validate", help="validate a day's drop or the corpus (quarantine, staging)")
    _partition_args(v)
    v.add_argument("--max-bad-share", type=share)

    s = tsub.add_parser("segment", help="segment a partition's accepted articles into the cache")
    _partition_args(s)
    s.add_argument("--workers", type=positive_int, help="processes (default: PIPELINES_TAGGING_SEGMENT_WORKERS "
                                                        "or the cores)")

    tsub.add_parser("segmentation-quality", help="pycantonese against HKCanCor's gold words, with baselines")

    t = tsub.add_parser("train", help="validate and segment the corpus, train and compare every model")
    t.add_argument("--as-of", type=day, help="the training day (names the version; default today, UTC)")
    t.add_argument("--models", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    t.add_argument("--views", nargs="+", choices=VIEWS, default=list(DEFAULT_VIEWS))
    t.add_argument("--grid", type=_grid, help="JSON {family: {parameter: [values]}} replacing the default grids")
    t.add_argument("--cv-folds", type=positive_int, default=5)
    t.add_argument("--holdout", type=fraction, default=0.2, help="share of articles held out")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--threshold", type=fraction, default=0.5, help="probability at which a tag is assigned")
    t.add_argument("--catboost-iterations", type=positive_int)
    t.add_argument("--workers", type=positive_int)
    t.add_argument("--max-bad-share", type=share)
    t.add_argument("--no-validate", action="store_true", help="use the corpus as last validated")
    t.add_argument("--promote", type=lambda x: x if x == "best" else _model(x),
                   help="promote this model of this training (or 'best': the best held-out macro F1)")

    pr = tsub.add_parser("promote", help="explicitly promote a trained model (its latest run unless --run-id)")
    pr.add_argument("--model", required=True, type=lambda x: x if x == "best" else _model(x))
    pr.add_argument("--run-id")
    pr.add_argument("--version", help="the training version (required with --model best)")

    tg = tsub.add_parser("tag", help="tag a day's accepted articles with the promoted model")
    tg.add_argument("--day", type=day, required=True)
    tg.add_argument("--end", type=day)
    tg.add_argument("--model", type=_model, help="this promoted model (default: the latest promotion)")

    r = tsub.add_parser("run", help="validate, segment and tag one day or a range (what the daily DAG does)")
    r.add_argument("--day", type=day, required=True)
    r.add_argument("--end", type=day)
    r.add_argument("--max-bad-share", type=share)
    r.add_argument("--model", type=_model)

    sh = tsub.add_parser("show", help="tagged articles with their titles")
    sh.add_argument("--day", type=day)
    sh.add_argument("--limit", type=positive_int, default=10)

    rp = tsub.add_parser("report", help="the latest comparison, the promoted model, tagged days")
    rp.add_argument("--limit", type=non_negative_int, default=10)

    c = tsub.add_parser("cache", help="the segmentation cache: size, or --compact its parts into one")
    c.add_argument("--compact", action="store_true")
    p.set_defaults(func=_run)

"""The tagging part of ``make demo``: a few hundred generated Cantonese articles, the weekly training through
Airflow (every model family on words, character n-grams and both; the best held-out model promoted explicitly
by the ``promote=best`` Param), two daily tagging runs, then the comparison, the word-vs-character table, the
segmentation scores and a few tagged articles."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime

from pipelines.demo import DemoContext, say, table

DEMO_START = date(2024, 6, 3)
#: Small enough for about a minute on two cores: one small grid per searched family, CatBoost kept short.
TRAIN_CONF = {
    # Every family, said explicitly: a DAG object reused after another dag.test() run may carry that run's conf.
    "models": ["majority", "seed_rf", "tfidf_lr", "tfidf_svm", "catboost"],
    "views": ["words", "chars", "both"],
    "grid": {"seed_rf": {"forest__n_estimators": [100], "vectorizer__min_df": [1, 2]},
             "tfidf_lr": {"clf__estimator__C": [1.0, 10.0]}},
    "catboost_iterations": 100,
    "promote": "best",
}


def views_table(comparison: list[dict]) -> list[dict]:
    """Family × view of held-out accuracy, from the comparison rows (``<family>_<view>`` model names)."""
    from pipelines.tagging.models.families import parse_model_name

    cells: dict[str, dict] = {}
    for row in comparison:
        try:
            family, view = parse_model_name(row["model"])
        except ValueError:  # the oracle row
            continue
        if view:
            cells.setdefault(family, {"family": family})[view] = row["accuracy"]
    views = [v for v in ("words", "chars", "both", "char1") if any(v in c for c in cells.values())]
    return [{"family": c["family"], **{v: c.get(v, "") for v in views}} for c in cells.values()]


def segmentation_table() -> list[dict]:
    from pipelines import db

    return db.query("""SELECT substr(m.segment, 7) AS segmenter,
                              round(max(m.value) FILTER (WHERE m.name = 'boundary_f1')::numeric, 3) AS boundary_f1,
                              round(max(m.value) FILTER (WHERE m.name = 'word_f1')::numeric, 3) AS word_f1,
                              round(max(m.value) FILTER (WHERE m.name = 'oov_recall')::numeric, 3) AS oov_recall
                       FROM run_metrics m JOIN runs r USING (run_id)
                       WHERE r.pipeline = 'tagging' AND r.kind = 'evaluate' AND m.segment LIKE 'model=%'
                         AND r.run_id = (SELECT run_id FROM runs WHERE pipeline = 'tagging' AND kind = 'evaluate'
                                         AND status = 'success' ORDER BY finished_at DESC LIMIT 1)
                       GROUP BY m.segment ORDER BY 3 DESC""")


def run(ctx: DemoContext) -> None:
    from pipelines import db
    from pipelines.tagging import jobs

    n = ctx.sizes.get("tagging_articles", 400)
    made = jobs.generate(corpus_articles=n, start=DEMO_START, days=2, daily_articles=40, bad_rate=0.02)
    say(f"Generated {made['corpus_articles']} labelled Cantonese articles from HKCanCor utterances "
        f"({made['two_tag_articles']} with two tags, {made['near_duplicates']} near-duplicates, "
        f"{made['noisy_labels']} planted wrong labels) and 2 daily drops of 40; bad rows planted: "
        f"{sum(sum(v.values()) for v in made['planted'].values())}")
    say("tagging_train_weekly: 4 families × words / chars / both + majority baseline, 5-fold CV, held-out split "
        "(promote=best) ...")
    train_day = DEMO_START - timedelta(days=1)
    ctx.run_once("tagging_train_weekly", datetime.combine(DEMO_START, dtime(4), tzinfo=UTC),
                 {**TRAIN_CONF, "day": train_day.isoformat()})
    days = [DEMO_START + timedelta(days=i) for i in range(2)]
    ctx.run_days("tagging_daily", days, at=dtime(2))

    report = jobs.report(limit=5)
    say("\n== tagging wrote ==")
    say(f"Held-out comparison, training {report['version']} (accuracy = exact tag set; the oracle is the "
        "generator's clean tags, the ceiling the planted noise allows):\n" + table(report["comparison"]))
    say("Words or characters? Held-out accuracy of the same families (the seed's claim, tested):\n"
        + table(views_table(report["comparison"])))
    say("Segmentation vs HKCanCor's gold words on held-out files (pycantonese is in-sample; dag_hmm_heldout is "
        "its algorithm refitted without those files):\n" + table(segmentation_table()))
    say("Promoted (explicitly): " + ", ".join(f"{p['model_name']} {p['model_version']} by {p['promoted_by']}"
                                              for p in report["promoted"]))
    say("Tagged days (tagging_days):\n" + table(report["days"]))
    say("A few tagged articles (tagging_article_tags):\n"
        + table([{"article": r["article_id"], "title": r["title"], "tags": r["tags"]}
                 for r in jobs.tagged_articles(limit=6)]))
    quarantined = db.query("SELECT partition_key AS partition, reason, count(*) AS rows FROM quarantine "
                           "WHERE pipeline = 'tagging' GROUP BY 1, 2 ORDER BY 1, 3 DESC")
    say("Quarantined rows by reason (quarantine):\n" + table(quarantined))

"""The article input contract: columns, tags, limits, quarantine reasons and where things live in the data root.

Input (a user's own files, or the generator's), under the data root:

* ``tagging/raw/corpus/``: the labelled training corpus, any number of files;
* ``tagging/raw/dt=YYYY-MM-DD/``: a day's new articles (tags optional: editor tags, when present, measure the
  promoted model live).

Files are JSON lines, JSON (an array of objects, or ``{"articles": [...]}``), CSV/TSV or Parquet, optionally
``.gz``/``.zst``/``.bz2``, UTF-8 with or without a BOM. Each article has ``id``, ``title``, ``body`` (Traditional
Chinese, Cantonese), ``published_at`` (ISO 8601; without an offset it is UTC) and ``tags``: a JSON array, or in
CSV a string of tags separated by ``|``, ``,`` or ``;`` (a JSON array in the cell works too).
"""

from __future__ import annotations

import os

PIPELINE = "tagging"

REQUIRED_COLUMNS = ("id", "title", "body", "published_at")
TAGS_COLUMN = "tags"

#: The tags the site uses, in the order reports list them, with their Chinese names. A tag outside this set is
#: quarantined as ``unknown_tag``; a new section adds its slug to ``PIPELINES_TAGGING_EXTRA_TAGS`` (comma-
#: separated) and is learnt at the next training.
TAG_NAMES: dict[str, str] = {
    "finance": "財經",
    "entertainment": "娛樂",
    "sports": "體育",
    "politics": "政治",
    "tech": "科技",
    "food": "飲食",
    "travel": "旅遊",
    "health": "健康",
}
TAGS: tuple[str, ...] = tuple(TAG_NAMES)

#: Quarantine reasons, in the order they are checked (a row gets the first that applies).
REASONS = (
    "malformed_row",        # a JSON line that is not an object, a CSV line with the wrong number of fields
    "control_characters",   # NUL and other control characters (never let into Postgres)
    "undecodable_text",     # bytes that are not UTF-8 (decoded as U+FFFD)
    "missing_id",
    "bad_id",               # longer than MAX_ID_CHARS
    "empty_body",
    "body_too_long",        # more than max_body_chars() characters
    "not_chinese",          # too few Chinese characters to be a Cantonese article
    "bad_published_at",
    "bad_tags",             # a tags value that is neither a list nor a separated string
    "missing_tags",         # corpus only: a training article needs at least one tag
    "unknown_tag",
    "conflicting_id",       # the same id twice with different content: which one is right is unknown
    "duplicate",            # the same id twice with the same content: kept once (benign)
)
#: A re-sent identical article is not bad data: counted and quarantined, but not towards the bad share.
BENIGN_REASONS = frozenset({"duplicate"})

MAX_ID_CHARS = 200
#: Share of Chinese characters among the letters of title + body below which an article is not Cantonese text.
MIN_CJK_SHARE = 0.5

#: Model families and feature views (see :mod:`pipelines.tagging.models.families` and
#: :mod:`pipelines.tagging.features`); a trained model is named ``<family>_<view>``, the baseline ``majority``.
FAMILIES = ("majority", "seed_rf", "tfidf_lr", "tfidf_svm", "catboost")
BASELINE = "majority"
VIEWS = ("words", "chars", "both", "char1")
DEFAULT_VIEWS = ("words", "chars", "both")


def model_name(family: str, view: str | None) -> str:
    return BASELINE if family == BASELINE else f"{family}_{view}"


def model_names(families: tuple[str, ...] = FAMILIES, views: tuple[str, ...] = VIEWS) -> list[str]:
    """Every model name the families and views make, the baseline first."""
    return [model_name(f, v) for f in families for v in ((None,) if f == BASELINE else views)]


CORPUS_PARTITION = "corpus"
RAW_ROOT = "tagging/raw"
GENERATED_REL = "tagging/generated"
MODELS_REL = "tagging/models"
SEGMENTS_REL = "tagging/segments"
REPORTS_REL = "tagging/reports"


def max_body_chars() -> int:
    """Bodies longer than this are quarantined (``PIPELINES_TAGGING_MAX_BODY_CHARS``, default 20,000)."""
    return int(os.environ.get("PIPELINES_TAGGING_MAX_BODY_CHARS") or 20_000)


def known_tags() -> tuple[str, ...]:
    """The tag vocabulary: :data:`TAGS` plus ``PIPELINES_TAGGING_EXTRA_TAGS``."""
    extra = [t.strip() for t in os.environ.get("PIPELINES_TAGGING_EXTRA_TAGS", "").split(",") if t.strip()]
    return TAGS + tuple(t for t in extra if t not in TAGS)


def raw_rel_dir(partition: str) -> str:
    """Where a partition's files are dropped: ``corpus`` or an ISO day."""
    return f"{RAW_ROOT}/{partition}" if partition == CORPUS_PARTITION else f"{RAW_ROOT}/dt={partition}"

"""The keystroke pipeline's contracts: the phrase, the paged JSON input, quarantine reasons, data-root paths.

Input, exactly as the UnifyID challenge serves it:

* a **training page** (the first one named by its user, ``.../user_<32 hex>.json``) is one user's
  ``{"user_data": [attempt, ...], "user_label": "<that user's id>", "next": "<file name of the next page,
  relative to this page's URL>" | null}``; a user may span several pages (merged, and counted);
* the **test document** is ``{"attempts": [attempt, ...]}`` without labels;
* an **attempt** is a list of key presses ``{"character": "B", "typed_at": "2017-12-07T21:24:51.212000"}``
  (press times only, no key-up; a backspace is the character ``"[backspace]"``).

An attempt is valid when its events replay (backspaces edit the text) to exactly :data:`PHRASE` with times
that never go backwards and no absurd gap. Every other attempt is quarantined with the first reason of
:data:`REASONS` that applies; broken attempts (malformed events, bad or backwards times, control characters)
count towards the rejection threshold, a typo left in (``wrong_phrase``) does not (:data:`BENIGN_REASONS`).
Users with fewer than ``min_samples`` valid attempts are dropped *on purpose* (as the published solutions did),
their attempts quarantined as ``too_few_samples`` (benign: the data is fine, there is just not enough of it to
learn that user). In the test document an invalid attempt keeps its place:
its prediction is ``"Invalid Input"`` (as the published solutions answered), with the reason beside it.
"""

from __future__ import annotations

import hashlib
import re

PIPELINE = "keystrokes"

PHRASE = "Be Authentic. Be Yourself. Be Typing."
BACKSPACE = "[backspace]"
#: What ``final_pred.json`` says for a test attempt that is not a valid typing of the phrase.
INVALID_PREDICTION = "Invalid Input"

#: Words of the phrase as (first, last) character positions, for word times.
WORDS: tuple[tuple[int, int], ...] = tuple(
    (m.start(), m.end() - 1) for m in re.finditer(r"\S+", PHRASE))

#: A key press more than this long after the previous one is not typing (the user walked away, or the clock
#: jumped): the attempt is quarantined as ``absurd_gap``.
MAX_GAP_MS = 30_000.0
#: Events beyond this many in one attempt: not a typing of a 37-character phrase (``too_many_events``).
MAX_EVENTS = 400

#: Quarantine reasons, in the order they are checked (an attempt gets the first that applies).
ATTEMPT_REASONS = ("not_a_list", "empty_attempt", "too_many_events", "malformed_event", "control_characters",
                   "bad_timestamp", "time_backwards", "absurd_gap", "wrong_phrase", "duplicate_attempt",
                   "too_few_samples")
#: Quarantined and counted, but not broken data, so not towards the rejection threshold: an attempt that replays
#: to another text (people make typos and leave them: about 3% of attempts; the published solutions answered
#: "Invalid Input" for them), a repeated attempt, and a user with too few attempts to learn. A dataset with no
#: valid attempt at all is still rejected.
BENIGN_REASONS = frozenset({"wrong_phrase", "duplicate_attempt", "too_few_samples"})
REASONS = ATTEMPT_REASONS

#: Default policy knobs (the DAGs' Params and the CLI override them).
DEFAULT_MIN_SAMPLES = 5
DEFAULT_MAX_PAGES = 50_000
MAX_PAGES_LIMIT = 1_000_000
#: A page larger than this is refused (a runaway or hostile server), bytes.
MAX_PAGE_BYTES = 64 * 1024 * 1024

USER_LABEL_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

# ------------------------------------------------------------------------------------------ data root
ROOT = PIPELINE
CACHE_PAGES = f"{ROOT}/cache/pages"  # one file per fetched page URL
CACHE_CRAWLS = f"{ROOT}/cache/crawls"  # one manifest per start URL: the pages of a finished crawl, in order
GENERATED = f"{ROOT}/generated"  # generated datasets: pages, test document, truth
MODELS = f"{ROOT}/models"  # <model name>/<version>/: one trained model and its report
REPORTS = f"{ROOT}/reports"  # <model name>/<training id>/: a training run's comparison report
ANALYSES = f"{ROOT}/analyses"  # <partition>/: seed 001's Analyse page
PREDICTIONS = f"{ROOT}/predictions"  # <partition>/<model name>/<version>/: final_pred.json and the CSV


def url_hash(url: str, n: int = 10) -> str:
    """A short stable hash of a URL (partition names, cache keys)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:n]


def partition_key(kind: str, url: str) -> str:
    """The ingest partition of a dataset: ``train-<hash of its URL>`` or ``test-<hash>``."""
    if kind not in ("train", "test"):
        raise ValueError(f"kind must be train or test, not {kind!r}")
    return f"{kind}-{url_hash(url)}"

#: Trainable model types (light, for the CLI and the DAGs' Params; ``models/registry.py`` maps them to classes).
MODEL_TYPES = ("logreg", "linear_svm", "adaboost", "random_forest", "catboost", "gru", "embedding")
MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

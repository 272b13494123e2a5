"""Cantonese articles with known tags, composed from HKCanCor's real utterances, in the real input formats.

Why this data: HKCanCor (shipped inside pycantonese) is real spoken Cantonese with gold word segmentation and
part-of-speech tags, so article bodies are real Cantonese and the segmenter meets the text it will meet in
production. Each article draws its sentences from HKCanCor and carries its section through topic words
(:mod:`pipelines.tagging.vocabulary`) put in place of some nouns, in the headline, and inserted where a body had
too few. What makes it learnable but not trivial, each a knob of :class:`TaggingSpec`:

* few topic words among much everyday talk (HKCanCor itself mentions money, companies, travel ...);
* ``distractor_mean`` topic words of *another* section in each article, shared words and anagram pairs;
* section sizes following a power law (``imbalance``); ``two_tag_share`` of articles with two sections;
* ``near_duplicate_share`` republished copies with an edit (the training split keeps them together);
* ``label_noise``: that share of labels replaced by a wrong section. The generator keeps the clean tags: the
  **oracle** predicts them, and its score against the observed labels is the ceiling the noise allows.

Output under the data root: ``tagging/raw/corpus/`` (labelled corpus, three files: JSON lines, CSV with a BOM,
gzipped JSON lines), ``tagging/raw/dt=YYYY-MM-DD/`` (daily drops; ``daily_tagged_share`` of them carry editor
tags), ``tagging/generated/truth.parquet`` (per article: clean and observed tags, planted words) and
``tagging/generated/spec.json``. ``bad_rate`` plants bad rows of every kind; their counts per partition are
returned (``planted``), so tests can check the quarantine exactly.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

from pipelines.tagging import schema
from pipelines.tagging.text import content_hash
from pipelines.tagging.vocabulary import INSERT_TEMPLATES, TITLE_TEMPLATES, tag_words

#: Bad-row kinds the generator plants, cycling in this order; each becomes exactly the reason of the same name
#: (``conflicting_id`` quarantines two rows: the planted one and the valid article whose id it reuses).
BAD_KINDS = ("empty_body", "not_chinese", "unknown_tag", "duplicate", "conflicting_id", "body_too_long",
             "control_characters", "undecodable_text", "missing_id", "bad_published_at", "malformed_row",
             "missing_tags")
_PUNCT = {".": "。", "?": "？", ",": "，", "!": "！", "~": "～", "...": "……", "…": "……"}
_NOUN_POS = frozenset({"n", "ns", "nz"})
_UNDECODABLE = "\u2063BAD\u2063"  # replaced by invalid UTF-8 bytes when the file is written


@dataclass(frozen=True)
class TaggingSpec:
    """What to generate; every number is a knob of the task's difficulty or size."""

    seed: int = 42
    corpus_articles: int = 600
    start: date = date(2024, 6, 3)
    days: int = 3
    daily_articles: int = 60
    sentences: tuple[int, int] = (4, 9)
    topic_rate: float = 0.5
    min_topic_words: int = 3
    distractor_mean: float = 0.7
    imbalance: float = 1.0
    two_tag_share: float = 0.15
    near_duplicate_share: float = 0.04
    label_noise: float = 0.04
    daily_tagged_share: float = 0.5
    bad_rate: float = 0.0
    tags: tuple[str, ...] = field(default_factory=lambda: schema.TAGS)

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]


@dataclass
class Article:
    id: str
    title: str
    body: str
    published_at: str
    clean_tags: list[str]
    observed_tags: list[str]
    noisy: bool
    topic_words: list[str]
    distractor_words: list[str]
    near_duplicate_of: str | None = None


# ----------------------------------------------------------------------------------------------- HKCanCor
@cache
def hkcancor_utterances() -> tuple[tuple[tuple[str, bool], ...], ...]:
    """HKCanCor utterances as ``(word, is_noun)`` tokens, punctuation mapped to full width; only utterances of
    at least three words and four characters (one-word back-channels make poor sentences)."""
    import pycantonese

    out = []
    for utterance in pycantonese.hkcancor().tokens(by_utterance=True):
        tokens = []
        for token in utterance:
            word = token.word
            if word in ("-", "--", '"', "'"):
                continue
            tokens.append((_PUNCT.get(word, word), (token.pos or "") in _NOUN_POS))
        if len(tokens) >= 3 and sum(len(w) for w, _ in tokens) >= 4:
            out.append(tuple(tokens))
    return tuple(out)


def join_words(words: list[str]) -> str:
    """Words as Cantonese text: no spaces, except between two Latin words."""
    out: list[str] = []
    for word in words:
        if out and out[-1][-1:].isascii() and out[-1][-1:].isalnum() and word[:1].isascii() and word[:1].isalnum():
            out.append(" ")
        out.append(word)
    text = "".join(out)
    return text if text[-1:] in "。？！…～" else text + "。"


# ----------------------------------------------------------------------------------------------- articles
class _Composer:
    """Draws sections, sentences and topic words with one seeded random generator."""

    def __init__(self, spec: TaggingSpec, rng: random.Random) -> None:
        self.spec, self.rng = spec, rng
        self.utterances = hkcancor_utterances()
        words = tag_words()
        self.tags = [t for t in spec.tags if t in words]
        self.words = {t: words[t] for t in self.tags}
        # A power law over words within a section (the first, anagram words, most frequent) ...
        self.word_weights = {t: [1.0 / (i + 1) ** 0.8 for i in range(len(w))] for t, w in self.words.items()}
        # ... and over sections: the order of spec.tags is the order of size.
        self.tag_weights = [1.0 / (i + 1) ** spec.imbalance for i in range(len(self.tags))]

    def sections(self) -> list[str]:
        first = self.rng.choices(self.tags, self.tag_weights)[0]
        if self.rng.random() >= self.spec.two_tag_share:
            return [first]
        others = [t for t in self.tags if t != first]
        weights = [w for t, w in zip(self.tags, self.tag_weights, strict=True) if t != first]
        return [first, self.rng.choices(others, weights)[0]]

    def word(self, tag: str) -> str:
        return self.rng.choices(self.words[tag], self.word_weights[tag])[0]

    def own_word(self, tags: list[str]) -> str:
        return self.word(tags[0] if len(tags) == 1 or self.rng.random() < 0.6 else tags[1])

    def sentence(self) -> list[tuple[str, bool]]:
        return list(self.rng.choice(self.utterances))

    def article(self, article_id: str, published_at: datetime) -> Article:
        rng, spec = self.rng, self.spec
        clean = self.sections()
        sentences = [self.sentence() for _ in range(rng.randint(*spec.sentences))]
        topic: list[str] = []
        for sent in sentences:
            for i, (_, noun) in enumerate(sent):
                if noun and rng.random() < spec.topic_rate:
                    sent[i] = (self.own_word(clean), False)
                    topic.append(sent[i][0])
        while len(topic) < spec.min_topic_words:
            topic.append(self._insert(sentences, self.own_word(clean)))
        distractors = []
        for _ in range(_poisson(rng, spec.distractor_mean)):
            other = rng.choice([t for t in self.tags if t not in clean])
            distractors.append(self._insert(sentences, self.word(other)))
        body = "".join(join_words([w for w, _ in s]) for s in sentences)
        title_word = self.own_word(clean)
        phrase = "".join(w for w, _ in self.sentence()[:4]).rstrip("。？！，")
        title = rng.choice(TITLE_TEMPLATES).format(w=title_word, x=phrase)
        observed, noisy = list(clean), False
        if rng.random() < spec.label_noise:
            slot = rng.randrange(len(observed))
            observed[slot] = rng.choice([t for t in self.tags if t not in clean])
            noisy = True
        return Article(id=article_id, title=title, body=body, published_at=_iso(published_at), clean_tags=clean,
                       observed_tags=observed, noisy=noisy, topic_words=[title_word, *topic],
                       distractor_words=distractors)

    def _insert(self, sentences: list[list[tuple[str, bool]]], word: str) -> str:
        sent = self.rng.choice(sentences)
        phrase = self.rng.choice(INSERT_TEMPLATES).format(w=word)
        pieces = phrase.split(word)
        tokens = [(p, False) for p in (pieces[0], word, pieces[1]) if p] + [("，", False)]
        sent[0:0] = tokens
        return word

    def near_duplicate(self, original: Article, article_id: str) -> Article:
        """A republished copy: one sentence replaced, one added, the headline marked as updated."""
        rng = self.rng
        parts = [p + "。" for p in original.body.split("。") if p]
        if parts:
            parts[rng.randrange(len(parts))] = join_words([w for w, _ in self.sentence()])
        parts.append(join_words([w for w, _ in self.sentence()]))
        published = datetime.fromisoformat(original.published_at) + timedelta(hours=rng.randint(1, 48))
        title, body = original.title + rng.choice(["（更新）", "（多圖）", "（附片）"]), "".join(parts)
        kept = _still_in(original.topic_words, title + body)  # the replaced sentence may have held some
        return Article(id=article_id, title=title, body=body, published_at=_iso(published),
                       clean_tags=list(original.clean_tags), observed_tags=list(original.observed_tags),
                       noisy=original.noisy, topic_words=kept,
                       distractor_words=_still_in(original.distractor_words, title + body),
                       near_duplicate_of=original.id)


def _still_in(words: list[str], text: str) -> list[str]:
    """``words`` (with repeats) that ``text`` still holds as many times."""
    out, budget = [], {}
    for word in words:
        budget.setdefault(word, text.count(word))
        if budget[word] > 0:
            out.append(word)
            budget[word] -= 1
    return out


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth), enough for small means."""
    if mean <= 0:
        return 0
    import math

    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compose(spec: TaggingSpec, n: int, prefix: str, start: datetime, span: timedelta, rng: random.Random,
            composer: _Composer, pool: list[Article] | None = None) -> list[Article]:
    """``n`` articles published within ``[start, start + span)``; near-duplicates copy earlier ones (or ``pool``)."""
    articles: list[Article] = []
    for i in range(n):
        article_id = f"{prefix}{i:06d}"
        candidates = articles or pool or []
        if candidates and rng.random() < spec.near_duplicate_share:
            articles.append(composer.near_duplicate(rng.choice(candidates), article_id))
            continue
        moment = start + timedelta(seconds=rng.randrange(max(1, int(span.total_seconds()))))
        articles.append(composer.article(article_id, moment))
    return articles


# ----------------------------------------------------------------------------------------------- bad rows
def _bad_rows(kind: str, valid: list[dict], rng: random.Random, labelled: bool) -> list[dict]:
    """Rows for one planted problem (each row dict may carry ``_raw`` = the exact line to write)."""
    base = dict(rng.choice(valid))
    base["id"] = f"bad-{kind}-{rng.randrange(10**9):09d}"
    if kind == "empty_body":
        return [{**base, "body": "   "}]
    if kind == "not_chinese":
        return [{**base, "title": "Weekly market wrap", "body": "Stocks rallied on Friday as investors cheered "
                 "the central bank's decision to hold rates. Analysts expect volatility next week."}]
    if kind == "unknown_tag":
        return [{**base, "tags": ["finance", "gossip"]}]
    if kind == "duplicate":
        return [dict(rng.choice(valid))]
    if kind == "conflicting_id":
        target = rng.choice([v for v in valid if not v.get("_conflicted")])
        target["_conflicted"] = True
        return [{**target, "body": target["body"] + "更正：" + target["body"][:10], "_conflicted": True}]
    if kind == "body_too_long":
        body = base["body"]
        return [{**base, "body": body * (schema.max_body_chars() // max(1, len(body)) + 2)}]
    if kind == "control_characters":
        return [{**base, "body": base["body"][:5] + "\x00\x07" + base["body"][5:]}]
    if kind == "undecodable_text":
        return [{**base, "body": base["body"][:5] + _UNDECODABLE + base["body"][5:]}]
    if kind == "missing_id":
        return [{**base, "id": ""}]
    if kind == "bad_published_at":
        return [{**base, "published_at": "2024-13-45 25:61"}]
    if kind == "malformed_row":
        return [{**base, "_malformed": True}]
    if kind == "missing_tags":
        return [{**base, "tags": []}] if labelled else [{**base, "body": "   "}]
    raise ValueError(f"unknown bad kind {kind}")


def _with_bad_rows(rows: list[dict], bad_rate: float, rng: random.Random, labelled: bool,
                   start: int) -> tuple[list[dict], Counter]:
    """``rows`` with ``round(bad_rate × len)`` bad ones mixed in; returns them and the expected reasons."""
    n_bad = round(bad_rate * len(rows))
    planted: Counter = Counter()
    out = list(rows)
    for i in range(n_bad):
        kind = BAD_KINDS[(start + i) % len(BAD_KINDS)]
        if kind == "missing_tags" and not labelled:
            kind = "empty_body"
        if kind == "conflicting_id" and all(r.get("_conflicted") for r in rows):
            kind = "empty_body"
        for bad in _bad_rows(kind, rows, rng, labelled):
            out.insert(rng.randrange(len(out) + 1), bad)
        planted[kind] += 2 if kind == "conflicting_id" else 1
    return out, planted


# ----------------------------------------------------------------------------------------------- writing
def _row(article: Article, with_tags: bool) -> dict:
    return {"id": article.id, "title": article.title, "body": article.body, "published_at": article.published_at,
            "tags": list(article.observed_tags) if with_tags else []}


def _encode_line(text: str) -> bytes:
    return text.encode("utf-8").replace(_UNDECODABLE.encode("utf-8"), b"\xff\xfe")


def _jsonl(rows: list[dict]) -> bytes:
    out = io.BytesIO()
    for row in rows:
        clean = {k: v for k, v in row.items() if not k.startswith("_")}
        line = json.dumps(clean, ensure_ascii=False)
        if row.get("_malformed"):
            line = line[: len(line) // 2]
        out.write(_encode_line(line) + b"\n")
    return out.getvalue()


def _csv(rows: list[dict]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["id", "title", "body", "published_at", "tags"])
    for row in rows:
        values = [row["id"], row["title"], row["body"], row["published_at"], "|".join(row["tags"])]
        if row.get("_malformed"):
            values.append("stray field")
        writer.writerow(values)
    return b"\xef\xbb\xbf" + _encode_line(text.getvalue())  # Excel's UTF-8 BOM


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    tmp.replace(path)
    return path


def generate_articles(spec: TaggingSpec) -> tuple[list[Article], dict[date, list[Article]]]:
    """The corpus and the daily articles (no files written): what :func:`write_dataset` writes."""
    rng = random.Random(spec.seed)
    composer = _Composer(spec, rng)
    first = datetime.combine(spec.start, datetime.min.time(), tzinfo=UTC)
    corpus = compose(spec, spec.corpus_articles, "art-", first - timedelta(days=365), timedelta(days=365), rng,
                     composer)
    daily = {day: compose(spec, spec.daily_articles, f"d{day:%Y%m%d}-",
                          datetime.combine(day, datetime.min.time(), tzinfo=UTC), timedelta(days=1), rng, composer,
                          pool=corpus)
             for day in spec.dates()}
    return corpus, daily


def write_dataset(spec: TaggingSpec, base: Path) -> dict:
    """Write the corpus, the daily drops, the truth and the spec under ``base`` (a local data root)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    corpus, daily = generate_articles(spec)
    rng = random.Random(spec.seed + 1)
    planted: dict[str, Counter] = {}
    files: list[str] = []

    rows = [_row(a, True) for a in corpus]
    thirds = [rows[i::3] for i in range(3)]
    planted["corpus"] = Counter()
    for i, (part, name) in enumerate(zip(thirds, ("articles-000.jsonl", "articles-001.csv", "articles-002.jsonl.gz"),
                                         strict=True)):
        part, bad = _with_bad_rows(part, spec.bad_rate, rng, labelled=True, start=i * 4)
        planted["corpus"] += bad
        rel = f"{schema.raw_rel_dir(schema.CORPUS_PARTITION)}/{name}"
        files.append(str(_write(base / rel, _csv(part) if name.endswith(".csv") else _jsonl(part))))
    for k, (day, articles) in enumerate(daily.items()):
        rows = [_row(a, rng.random() < spec.daily_tagged_share) for a in articles]
        rows, bad = _with_bad_rows(rows, spec.bad_rate, rng, labelled=False, start=k)
        planted[day.isoformat()] = bad
        name = "articles.csv" if k % 2 else "articles.jsonl"
        rel = f"{schema.raw_rel_dir(day.isoformat())}/{name}"
        files.append(str(_write(base / rel, _csv(rows) if name.endswith(".csv") else _jsonl(rows))))

    everything = [("corpus", a) for a in corpus] + [(d.isoformat(), a) for d, arts in daily.items() for a in arts]
    truth = pa.table({
        "id": [a.id for _, a in everything],
        "partition": [p for p, _ in everything],
        "content_hash": [content_hash(a.title, a.body) for _, a in everything],
        "clean_tags": pa.array([a.clean_tags for _, a in everything], pa.list_(pa.string())),
        "observed_tags": pa.array([a.observed_tags for _, a in everything], pa.list_(pa.string())),
        "noisy": [a.noisy for _, a in everything],
        "near_duplicate_of": [a.near_duplicate_of for _, a in everything],
        "topic_words": pa.array([a.topic_words for _, a in everything], pa.list_(pa.string())),
        "distractor_words": pa.array([a.distractor_words for _, a in everything], pa.list_(pa.string())),
    })
    truth_path = base / schema.GENERATED_REL / "truth.parquet"
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(truth, truth_path)
    (base / schema.GENERATED_REL / "spec.json").write_text(json.dumps(asdict(spec), default=str, indent=2))
    tag_counts = Counter(t for a in corpus for t in a.observed_tags)
    return {
        "corpus_articles": len(corpus),
        "daily_articles": {d.isoformat(): len(a) for d, a in daily.items()},
        "corpus_tags": dict(tag_counts.most_common()),
        "two_tag_articles": sum(len(a.clean_tags) > 1 for a in corpus),
        "near_duplicates": sum(a.near_duplicate_of is not None for a in corpus),
        "noisy_labels": sum(a.noisy for a in corpus),
        "planted": {k: dict(v) for k, v in planted.items()},
        "files": files,
    }

"""How well pycantonese finds Cantonese words, measured against HKCanCor's gold segmentation, honestly.

pycantonese's shipped segmenter was **fitted on HKCanCor** (all of it), so its score on HKCanCor is in-sample:
an upper bound, not what to expect on new text. What an honest reader needs beside it, on the same held-out
HKCanCor files (a seeded 20% of the 58 files) and the same text (the gold words, punctuation left out):

* ``dag_hmm_heldout``: pycantonese's own algorithm (its DAG + HMM segmenter) refitted on the other 80% of the
  files only: the out-of-sample estimate of the same method;
* ``max_match_hkcancor``: forward maximum matching with the dictionary of the 80% training files;
* ``max_match_rime``: forward maximum matching with the rime-cantonese dictionary pycantonese ships (an external
  dictionary; pycantonese also used it in training);
* ``characters`` (every character a word) and ``char_bigrams`` (two-character chunks): what character features
  amount to as a segmentation.

Scores: word-boundary precision, recall and F1 (a boundary is a cut between two characters), word precision,
recall and F1 (a word is right when both its ends are), and the recall of out-of-vocabulary words (gold words
absent from the training files' dictionary).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pipelines.tagging.text import keep_token

log = logging.getLogger(__name__)

IN_SAMPLE = "pycantonese"
MAX_WORD = 6


def _spans(words: Sequence[str]) -> set[tuple[int, int]]:
    spans, start = set(), 0
    for word in words:
        spans.add((start, start + len(word)))
        start += len(word)
    return spans


def _cuts(words: Sequence[str]) -> set[int]:
    return {end for _, end in _spans(words)} - {sum(len(w) for w in words)}


def score(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], lexicon: set[str] | None = None) -> dict:
    """Boundary and word precision / recall / F1 (and OOV recall when ``lexicon`` is given), micro-averaged."""
    tp = fp = fn = wtp = wfp = wfn = oov = oov_hit = 0
    for pred, true in zip(predicted, gold, strict=True):
        if "".join(pred) != "".join(true):
            raise ValueError(f"segmentation changed the text: {''.join(pred)!r} != {''.join(true)!r}")
        pc, tc = _cuts(pred), _cuts(true)
        tp, fp, fn = tp + len(pc & tc), fp + len(pc - tc), fn + len(tc - pc)
        ps, ts = _spans(pred), _spans(true)
        wtp, wfp, wfn = wtp + len(ps & ts), wfp + len(ps - ts), wfn + len(ts - ps)
        if lexicon is not None:
            for span, word in zip(sorted(ts), true, strict=True):
                if word not in lexicon:
                    oov += 1
                    oov_hit += span in ps

    def f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if p + r else 0.0

    bp, br = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    wp, wr = wtp / max(wtp + wfp, 1), wtp / max(wtp + wfn, 1)
    out = {"boundary_precision": bp, "boundary_recall": br, "boundary_f1": f1(bp, br),
           "word_precision": wp, "word_recall": wr, "word_f1": f1(wp, wr), "words": wtp + wfn}
    if lexicon is not None:
        out["oov_words"] = oov
        out["oov_recall"] = oov_hit / oov if oov else float("nan")
    return out


def max_match(text: str, lexicon: set[str], max_len: int = MAX_WORD) -> list[str]:
    """Forward maximum matching: at each position the longest dictionary word, else one character."""
    out, i = [], 0
    while i < len(text):
        for size in range(min(max_len, len(text) - i), 0, -1):
            if size == 1 or text[i:i + size] in lexicon:
                out.append(text[i:i + size])
                i += size
                break
    return out


def bigram_chunks(text: str) -> list[str]:
    return [text[i:i + 2] for i in range(0, len(text), 2)]


def gold_utterances() -> list[list[list[str]]]:
    """HKCanCor's gold words per file and utterance, punctuation tokens left out, empty utterances dropped."""
    import pycantonese

    corpus = pycantonese.hkcancor()
    out = []
    for utterances in corpus.words(by_utterance=True, by_file=True):
        words = [[w for w in u if keep_token(w)] for u in utterances]
        out.append([u for u in words if u])
    return out


def split_files(n_files: int, heldout_share: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """A seeded split of file indices into (train, held out)."""
    order = list(range(n_files))
    random.Random(seed).shuffle(order)
    n_out = max(1, round(heldout_share * n_files))
    return sorted(order[n_out:]), sorted(order[:n_out])


def _heldout_dag_hmm(train: list[list[str]]) -> Callable[[str], list[str]] | None:
    """pycantonese's DAG + HMM segmenter refitted on ``train`` only (None if this pycantonese has none)."""
    try:
        from pycantonese.word_segmentation.segmenter import _Segmenter
    except ImportError:  # a private class: another pycantonese version may not have it
        log.warning("pycantonese has no _Segmenter: the held-out refit is skipped")
        return None
    model = _Segmenter()
    model.fit_segmented([[model._encode(w) for w in u] for u in train])

    def segment(text: str) -> list[str]:
        return list(next(model.predict([text])))

    return segment


def evaluate(heldout_share: float = 0.2, seed: int = 0, max_utterances: int | None = None) -> dict:
    """Every segmenter on the same held-out HKCanCor utterances: ``{"table": {name: scores}, ...}``."""
    import pycantonese
    from pycantonese.data.rime_cantonese import CHARS_TO_JYUTPING

    files = gold_utterances()
    train_idx, test_idx = split_files(len(files), heldout_share, seed)
    train = [u for i in train_idx for u in files[i]]
    test = [u for i in test_idx for u in files[i]]
    if max_utterances:
        test = test[:max_utterances]
    texts = ["".join(u) for u in test]
    lexicon = {w for u in train for w in u}
    rime = {w for w in CHARS_TO_JYUTPING if 1 < len(w) <= MAX_WORD}
    segmenters: dict[str, Callable[[str], list[str]] | None] = {
        IN_SAMPLE: pycantonese.segment,
        "dag_hmm_heldout": _heldout_dag_hmm(train),
        "max_match_hkcancor": lambda t: max_match(t, lexicon),
        "max_match_rime": lambda t: max_match(t, rime),
        "characters": list,
        "char_bigrams": bigram_chunks,
    }
    table, seconds = {}, {}
    for name, segment in segmenters.items():
        if segment is None:
            continue
        start = time.perf_counter()
        predicted = [segment(t) for t in texts]
        seconds[name] = time.perf_counter() - start
        table[name] = {**score(predicted, test, lexicon), "chars_per_second": sum(map(len, texts)) / seconds[name]}
    return {"table": table, "utterances": len(test), "characters": sum(map(len, texts)),
            "train_files": len(train_idx), "heldout_files": len(test_idx), "seed": seed,
            "in_sample": IN_SAMPLE, "oov_share": table[IN_SAMPLE]["oov_words"] / max(table[IN_SAMPLE]["words"], 1)}


def planted_word_recall(words_per_article: Sequence[Sequence[str]], planted: Sequence[Sequence[str]]) -> dict:
    """On generated articles: the share of planted topic words that the segmentation kept whole (a word split in
    two reaches the word features as two other words)."""
    total = hit = 0
    missed: dict[str, int] = {}
    for words, topic in zip(words_per_article, planted, strict=True):
        have = set(words)
        for word in topic:
            total += 1
            if word.lower() in have:
                hit += 1
            else:
                missed[word] = missed.get(word, 0) + 1
    worst = sorted(missed.items(), key=lambda kv: -kv[1])[:10]
    return {"planted_words": total, "kept_whole": hit / total if total else float("nan"), "most_split": worst}


def write_report(folder: Path, result: dict, planted: dict | None = None) -> list[Path]:
    """``segmentation.md`` and ``segmentation_f1.png`` (boundary and word F1 of every segmenter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    table = result["table"]
    names = list(table)
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [table[n]["boundary_f1"] for n in names], width=0.4, label="boundary F1")
    ax.bar([x + 0.2 for x in xs], [table[n]["word_f1"] for n in names], width=0.4, label="word F1")
    ax.set_xticks(list(xs), [n + (" (in-sample)" if n == result["in_sample"] else "") for n in names],
                  rotation=20, ha="right")
    ax.set(ylim=(0, 1), ylabel="F1", title=f"Segmentation on {result['heldout_files']} held-out HKCanCor files")
    ax.legend(loc="lower right")
    png = folder / "segmentation_f1.png"
    fig.savefig(png, dpi=100, bbox_inches="tight")
    plt.close(fig)
    lines = ["# Word segmentation against HKCanCor's gold words", "",
             f"{result['utterances']:,} utterances ({result['characters']:,} characters) of {result['heldout_files']} "
             f"held-out HKCanCor files (seed {result['seed']}); dictionaries and the refit use the other "
             f"{result['train_files']} files. {result['oov_share']:.1%} of the held-out words are not in the "
             "training files' dictionary.", "",
             f"**`{result['in_sample']}` is in-sample**: pycantonese's shipped model was fitted on all of HKCanCor, "
             "these files included, so its score is an upper bound. `dag_hmm_heldout` is the same algorithm "
             "refitted without the held-out files: the honest estimate for new text.", "",
             "| segmenter | boundary P | boundary R | boundary F1 | word P | word R | word F1 | OOV recall | chars/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in table.items():
        lines.append(f"| {name} | {row['boundary_precision']:.3f} | {row['boundary_recall']:.3f} | "
                     f"{row['boundary_f1']:.3f} | {row['word_precision']:.3f} | {row['word_recall']:.3f} | "
                     f"{row['word_f1']:.3f} | {row['oov_recall']:.3f} | {row['chars_per_second']:,.0f} |")
    if planted:
        lines += ["", f"On the generated articles, pycantonese kept {planted['kept_whole']:.1%} of "
                  f"{planted['planted_words']:,} planted topic words whole. Most often split: "
                  + ", ".join(f"{w} ({n})" for w, n in planted["most_split"])]
    lines += ["", "![Segmentation F1](segmentation_f1.png)", ""]
    report = folder / "segmentation.md"
    report.write_text("\n".join(lines))
    return [report, png]

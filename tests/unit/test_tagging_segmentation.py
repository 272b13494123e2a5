"""Segmentation: pycantonese against HKCanCor's gold words (a stated F1, not pinned outputs: pycantonese's
segmentations change between versions), the scoring arithmetic, the baselines, the cache and the pool."""

from __future__ import annotations

import pytest

from pipelines.storage import DataRoot
from pipelines.tagging import segment as seg
from pipelines.tagging import segquality
from pipelines.tagging.text import article_text, char_text, cjk_share, clauses, content_hash


@pytest.fixture(scope="module")
def quality() -> dict:
    return segquality.evaluate()


def test_pycantonese_matches_hkcancor_gold_words_above_stated_f1(quality):
    """pycantonese is in-sample on HKCanCor (it was fitted on it): its boundary F1 must be high. Measured 0.971
    boundary / 0.929 word F1 with pycantonese 5.0.0; the floors leave room for other versions."""
    row = quality["table"]["pycantonese"]
    assert row["boundary_f1"] >= 0.93
    assert row["word_f1"] >= 0.88
    assert quality["utterances"] > 2000 and quality["heldout_files"] == 12


def test_out_of_sample_refit_and_baselines_are_reported_and_ordered(quality):
    table = quality["table"]
    assert {"pycantonese", "dag_hmm_heldout", "max_match_hkcancor", "max_match_rime", "characters",
            "char_bigrams"} <= set(table)
    # the honest estimate (same algorithm, held-out files) is close to but below the in-sample figure
    assert 0.90 <= table["dag_hmm_heldout"]["boundary_f1"] <= table["pycantonese"]["boundary_f1"]
    # a dictionary of the training files beats characters; pycantonese beats every baseline
    assert table["max_match_hkcancor"]["word_f1"] > table["characters"]["word_f1"] > table["char_bigrams"]["word_f1"]
    for name in ("max_match_hkcancor", "max_match_rime", "characters", "char_bigrams"):
        assert table["pycantonese"]["word_f1"] > table[name]["word_f1"]
    # every character a word: every gold boundary is found (recall 1), many extra ones
    assert table["characters"]["boundary_recall"] == 1.0 and table["characters"]["boundary_precision"] < 0.8


def test_score_by_hand():
    gold = [["廣東話", "容易", "學"]]
    assert segquality.score(gold, gold)["boundary_f1"] == 1.0
    # characters: cuts 1,2,3,4,5 of which 3 and 5 are gold → P 2/5, R 2/2; words: only 學 right → P 1/6, R 1/3
    chars = segquality.score([list("廣東話容易學")], gold)
    assert chars["boundary_precision"] == pytest.approx(0.4) and chars["boundary_recall"] == 1.0
    assert chars["word_precision"] == pytest.approx(1 / 6) and chars["word_recall"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="changed the text"):
        segquality.score([["廣東", "話"]], [["廣東話", "學"]])


def test_max_match_and_bigram_chunks():
    assert segquality.max_match("廣東話容易學", {"廣東話", "廣東", "容易"}) == ["廣東話", "容易", "學"]
    assert segquality.bigram_chunks("廣東話容易學") == ["廣東", "話容", "易學"]


def test_file_split_is_seeded_and_disjoint():
    train, held = segquality.split_files(58, 0.2, seed=0)
    assert (train, held) == segquality.split_files(58, 0.2, seed=0)
    assert not set(train) & set(held) and len(held) == 12 and len(train) + len(held) == 58
    assert segquality.split_files(58, 0.2, seed=1) != (train, held)


def test_planted_word_recall():
    out = segquality.planted_word_recall([["股市", "今日", "升"], ["加", "息"]], [["股市"], ["加息"]])
    assert out["planted_words"] == 2 and out["kept_whole"] == 0.5 and out["most_split"] == [("加息", 1)]


def test_segment_text_drops_punctuation_keeps_the_text():
    text = "廣東話容唔容易學？ 我哋 test 一下，OK！"
    words = seg.segment_text(text)
    assert all(any(ch.isalnum() for ch in w) for w in words)
    assert "".join(words) == "".join(clauses(text))  # nothing lost but punctuation and spaces
    assert "test" in words and "ok" in words  # Latin words lower-cased, kept whole


def test_text_helpers():
    assert content_hash("標題", "內容\r\n第二行") == content_hash("標題", "內容\n第二行")
    assert content_hash("標題", "內容") != content_hash("標題", "內容。")
    assert article_text("", " 內容 ") == "內容"
    assert cjk_share("abc") == 0.0 and cjk_share("中文ab") == 0.5 and cjk_share("，。123") == 0.0
    assert char_text("今日天氣，好好！OK") == "今日天氣 好好 ok"


def test_cache_round_trip_and_reruns_skip_work(tmp_path):
    root = DataRoot(str(tmp_path))
    cache = seg.SegmentCache(root, segmenter="pycantonese-test")
    texts = ["今日天氣好好。", "我哋去飲茶啦。", "今日天氣好好。"]
    hashes = [content_hash("", t) for t in texts]
    words, stats = seg.words_for(hashes, texts, cache, workers=1)
    assert (stats.unique, stats.cached, stats.segmented) == (2, 0, 2)
    again, stats = seg.words_for(hashes, texts, cache, workers=1)
    assert (stats.cached, stats.segmented) == (2, 0) and again == words
    assert cache.size() == 2 and len(cache.parts()) == 1
    more = ["股市今日升咗。"]
    seg.words_for([content_hash("", more[0])], more, cache, workers=1)
    assert len(cache.parts()) == 2
    assert cache.compact() == {"parts_before": 2, "parts_after": 1, "articles": 3}
    assert cache.lookup(hashes) == {h: words[h] for h in hashes}
    # another segmenter version never sees these segmentations
    assert seg.SegmentCache(root, segmenter="pycantonese-other").lookup(hashes) == {}


def test_parallel_chunks_give_the_serial_result(monkeypatch):
    monkeypatch.setattr(seg, "MIN_PARALLEL", 10)
    texts = ["今日天氣好好，我哋去飲茶。", "股市今日升咗好多。", "佢好鍾意踢波。"] * 8
    assert seg.segment_many(texts, workers=2, chunk_size=5) == seg.segment_many(texts, workers=1)


def test_feature_version_names_the_segmenter():
    assert seg.segmenter_version().startswith("pycantonese-")
    assert len(seg.feature_version()) == 12

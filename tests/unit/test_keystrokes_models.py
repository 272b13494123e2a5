"""The models on generated data: each beats chance by a wide margin and stays under the oracle; training is
reproducible; save/load gives the same probabilities; the embedding model enrols new users without retraining;
metrics pinned on known values; the holdout split is stratified and stable."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from pipelines.keystrokes.features import Samples
from pipelines.keystrokes.generate import KeystrokeSpec, generate_dataset
from pipelines.keystrokes.ingest import sample_id
from pipelines.keystrokes.models.base import load_model
from pipelines.keystrokes.models.embedding import EmbeddingModel
from pipelines.keystrokes.models.evaluate import eer, metrics, per_user_eer
from pipelines.keystrokes.models.split import holdout_mask
from pipelines.keystrokes.models.train import train_and_evaluate
from pipelines.keystrokes.replay import Attempt, check_attempt
from pipelines.keystrokes.schema import MODEL_TYPES

BUDGETS = {"gru": {"epochs": 25}, "embedding": {"epochs": 30}, "catboost": {"iterations": 150},
           "random_forest": {"n_estimators": 150}, "adaboost": {"n_estimators": 100}}


def samples_of(spec: KeystrokeSpec, min_samples: int = 5) -> tuple[Samples, dict]:
    data = generate_dataset(spec)
    ids, chars, times, labels = [], [], [], []
    for page in data.pages.values():
        for raw in page["user_data"]:
            checked = check_attempt(raw)
            if isinstance(checked, Attempt):
                ids.append(sample_id(page["user_label"], checked))
                chars.append(checked.chars)
                times.append(checked.times_us)
                labels.append(page["user_label"])
    counts = Counter(labels)
    keep = [i for i, lab in enumerate(labels) if counts[lab] >= min_samples]
    return Samples([ids[i] for i in keep], [chars[i] for i in keep], [times[i] for i in keep],
                   [labels[i] for i in keep]), data.truth


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    samples, truth = samples_of(KeystrokeSpec(n_users=30, mean_samples=25, samples_sigma=0.5, seed=21))
    out = tmp_path_factory.mktemp("keystrokes-models")
    result = train_and_evaluate(samples, out, models=list(MODEL_TYPES), params=BUDGETS, holdout_share=0.25, seed=3,
                                oracle_profiles=truth["profiles"], progress=False)
    return result, out, samples


def test_every_model_beats_chance_widely_and_stays_under_the_oracle(trained):
    result, _, _ = trained
    table = result["table"]
    users = result["users"]
    oracle = table["oracle"]["accuracy"]
    assert 0.6 < oracle < 1.0
    assert table["chance"]["accuracy"] < 3 / users
    for name in MODEL_TYPES:
        row = table[name]
        assert row["accuracy"] > 5 / users, (name, row)  # chance is 1 / users
        assert row["accuracy"] <= oracle + 0.02, (name, row)
        assert row["top3_accuracy"] >= row["accuracy"]
        assert row["eer"] < 0.35 < table["chance"]["eer"], (name, row)  # chance's EER is about 0.5
    assert max(table[m]["accuracy"] for m in MODEL_TYPES) > 0.5


def test_report_files(trained):
    _, out, _ = trained
    report = out / "report"
    for name in ("report.md", "metrics.csv", "user_level_perf.csv", "comparison.png", "user_accuracy_hist.png",
                 "user_insights.png", *(f"user_level_perf_{m}.csv" for m in MODEL_TYPES)):
        assert (report / name).is_file(), name
    import pandas as pd

    perf = pd.read_csv(report / "user_level_perf.csv")
    assert {"user", "samples", "accuracy", "eer", "most_confused_with", "train_samples", "mean_chars_per_s",
            "chars_per_s_std", "backspace_rate"} <= set(perf.columns)
    assert "Spearman correlation of per-user accuracy" in (report / "report.md").read_text()


@pytest.mark.parametrize("name", MODEL_TYPES)
def test_save_and_load_give_the_same_probabilities(trained, name):
    _, out, samples = trained
    model = load_model(out / name)
    probe = samples.subset(np.arange(0, len(samples), 7))
    again = load_model(out / name)
    assert np.allclose(model.predict_proba(probe), again.predict_proba(probe))
    users, p = model.top_k(probe, 3)
    assert len(users) == len(probe) and all(len(u) == 3 for u in users)
    assert (np.diff(p, axis=1) <= 1e-12).all()
    assert (out / name / "train_samples.txt").read_text().split()  # what it trained on, for later comparisons


def test_training_is_reproducible(tmp_path):
    samples, _ = samples_of(KeystrokeSpec(n_users=8, mean_samples=14, samples_sigma=0.3, seed=5))
    models = ["random_forest", "catboost", "gru", "embedding"]
    budgets = {"gru": {"epochs": 2}, "embedding": {"epochs": 2}, "catboost": {"iterations": 20},
               "random_forest": {"n_estimators": 20}}
    first = train_and_evaluate(samples, tmp_path / "a", models=models, params=budgets, seed=9, progress=False)
    second = train_and_evaluate(samples, tmp_path / "b", models=models, params=budgets, seed=9, progress=False)
    assert first["table"] == second["table"]
    other = train_and_evaluate(samples, tmp_path / "c", models=["gru"], params=budgets, seed=10, progress=False)
    assert other["table"]["gru"] != first["table"]["gru"]  # the seed matters (and is not ignored)


def test_new_users_enrol_without_retraining():
    samples, _ = samples_of(KeystrokeSpec(n_users=48, mean_samples=22, samples_sigma=0.4, seed=31), min_samples=8)
    labels = sorted(set(samples.labels.tolist()))
    newcomers = set(labels[:8])
    known = np.array([lab not in newcomers for lab in samples.labels])
    model = EmbeddingModel(epochs=25, seed=1)
    model.fit(samples.subset(known), sorted(set(samples.labels[known].tolist())))
    weights = {k: v.clone() for k, v in model.net_.state_dict().items()}
    new = samples.subset(~known)
    first_five = np.zeros(len(new), dtype=bool)
    for lab in newcomers:
        first_five[np.flatnonzero(new.labels == lab)[:5]] = True
    model.enrol(new.labels[first_five], new.subset(first_five))
    assert all(torch.equal(weights[k], v) for k, v in model.net_.state_dict().items())  # no retraining
    assert newcomers <= set(model.classes_) and len(model.classes_) == len(labels)
    probe = new.subset(~first_five)
    users, _ = model.top_k(probe, 1)
    accuracy = float(np.mean([u[0] == lab for u, lab in zip(users, probe.labels, strict=True)]))
    assert accuracy > 5 / len(labels)  # identified among all 48 enrolled users; chance is 1/48
    model.params["ann_threshold"] = 1  # the HNSW index instead of the exact search
    ann_users, ann_p = model.top_k(probe, 3)
    same = np.mean([a[0] == b[0] for a, b in zip(ann_users, users, strict=True)])
    assert same > 0.95 and np.all(ann_p[:, 0] >= ann_p[:, 1])


def test_eer_on_known_scores():
    assert eer([0.9, 0.8], [0.1, 0.2]) == 0.0
    assert eer([0.5, 0.5], [0.5, 0.5]) == 0.5
    assert eer([0.9, 0.8, 0.7, 0.3], [0.6, 0.2, 0.1, 0.05]) == pytest.approx(0.25)
    assert np.isnan(eer([], [0.1]))


def test_metrics_pinned():
    y = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[y]
    m = metrics(y, perfect)
    assert (m["accuracy"], m["top3_accuracy"], m["macro_f1"], m["eer"]) == (1.0, 1.0, 1.0, 0.0)
    flat = np.full((6, 3), 1 / 3)
    m = metrics(y, flat)
    assert m["eer"] == 0.5 and m["top3_accuracy"] == 1.0 and m["log_loss"] == pytest.approx(np.log(3))
    half = np.eye(3)[[0, 1, 1, 1, 2, 0]]
    m = metrics(y, half)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert per_user_eer(y, half)[0] == pytest.approx(0.4)  # genuine {1, 0} vs impostor {0, 0, 0, 1}


def test_holdout_is_stratified_stable_and_leaves_something_to_train_on():
    labels = ["a"] * 10 + ["b"] * 2 + ["c"] * 1 + ["d"] * 5
    ids = [f"s{i}" for i in range(len(labels))]
    mask = holdout_mask(ids, labels, 0.2, seed=1)
    held = Counter(lab for lab, m in zip(labels, mask, strict=True) if m)
    assert held == {"a": 2, "b": 1, "d": 1}  # c has one attempt: it only trains
    order = np.random.default_rng(0).permutation(len(labels))
    shuffled = holdout_mask([ids[i] for i in order], [labels[i] for i in order], 0.2, seed=1)
    assert {ids[i] for i, m in zip(order, shuffled, strict=True) if m} == {i for i, m in zip(ids, mask, strict=True)
                                                                            if m}
    assert holdout_mask(ids, labels, 0.2, seed=2).tolist() != mask.tolist()
    with pytest.raises(ValueError):
        holdout_mask(ids, labels, 1.0)


def test_embedding_exact_search_runs_on_one_blas_thread(monkeypatch):
    """top_k (what prediction calls) bypasses predict_proba's BLAS limit: the exact search sets it itself (two
    OpenBLAS threads made a single-attempt search 13-15x the CPU on the shared machine)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from pipelines.keystrokes.models.embedding import l2_normalise

    rng = np.random.default_rng(0)
    model = EmbeddingModel(ann_threshold=10**9)
    model.scale_ = 20.0
    model._set_gallery([f"u{i}" for i in range(500)], l2_normalise(rng.standard_normal((500, 8))), np.ones(500))
    seen, real = [], np.argpartition

    def spy(*args, **kwargs):
        seen.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "argpartition", spy)
    probes = l2_normalise(rng.standard_normal((3, 8)))
    with threadpool_limits(limits=2, user_api="blas"):
        idx, p = model.top_k_embedded(probes, 3, exact=True)
        after = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    assert seen == [1]
    assert after == 2  # restored
    assert idx.shape == (3, 3) and np.allclose(p.sum(axis=1) <= 1.0 + 1e-9, True)
    assert (idx[:, 0] == np.argmax(probes @ model.gallery_.T, axis=1)).all()


def test_temperature_in_row_chunks_matches_the_whole_softmax(monkeypatch):
    """fit_temperature works in row chunks (the whole softmax at 2,941 users took the embedding fit past
    6 GiB): the fitted scale must be the one the whole-matrix log loss gives."""
    from scipy.optimize import minimize_scalar

    from pipelines.keystrokes.models import base

    rng = np.random.default_rng(3)
    y = rng.integers(0, 40, size=500)
    scores = rng.normal(size=(500, 40)) * 0.2
    scores[np.arange(500), y] += 0.3  # the true class a little ahead

    def whole(log_s):
        p = base.softmax(scores, float(np.exp(log_s)))
        return -np.log(p[np.arange(len(y)), y]).mean()

    expected = float(np.exp(minimize_scalar(whole, bounds=(np.log(1e-2), np.log(1e3)), method="bounded",
                                            options={"xatol": 1e-3}).x))
    monkeypatch.setattr(base, "TEMPERATURE_CHUNK_CELLS", 40 * 7)  # 7 rows a chunk: many chunks, a ragged last
    assert base.fit_temperature(scores, y) == pytest.approx(expected, rel=1e-3)
    assert 1.0 < expected < 100.0  # a real optimum, not a bound


def test_embedding_temperature_uses_a_bounded_seeded_sample(monkeypatch):
    """The leave-one-out temperature compares at most LOO_MAX_CELLS (attempt, user) pairs: a seeded sample of
    the attempts once there are more, so the fit's memory does not grow with attempts × users."""
    from pipelines.keystrokes.models import base, embedding

    samples, _ = samples_of(KeystrokeSpec(n_users=30, mean_samples=20, samples_sigma=0.3, seed=8))
    classes = sorted(set(samples.labels.tolist()))
    seen = []
    real = base.fit_temperature
    monkeypatch.setattr(embedding, "fit_temperature", lambda s, y, **kw: seen.append(s.shape) or real(s, y, **kw))
    full = EmbeddingModel(epochs=2, seed=4)
    full.fit(samples, classes)
    monkeypatch.setattr(embedding, "LOO_MAX_CELLS", 30 * 100)
    monkeypatch.setattr(embedding, "LOO_MIN_ATTEMPTS", 50)
    sampled = [EmbeddingModel(epochs=2, seed=4) for _ in range(2)]
    for model in sampled:
        model.fit(samples, classes)
    assert seen[0][0] > 300 and seen[1:] == [(100, 30), (100, 30)]
    assert sampled[0].scale_ == sampled[1].scale_  # seeded
    assert sampled[0].scale_ == pytest.approx(full.scale_, rel=0.25)  # the sample estimates the same scale

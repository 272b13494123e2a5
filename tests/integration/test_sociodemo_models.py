"""The socio-demographic models end to end on generated data: TopClass, CatBoost and DeepSets are trained on
one split of users and judged on held-out users against the generator's oracle (its exact posterior).

Checked: every model beats TopClass on the contest score and none beats the oracle beyond noise; predictions
are probabilities; save/load round trips; the report is written; the metrics on a hand-computed case; the
split is deterministic and disjoint."""

from datetime import date

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines.sociodemo.generate import SociodemoSpec, oracle_probabilities, truth, write_dataset
from pipelines.sociodemo.history import build_features
from pipelines.sociodemo.models.base import MODELS, Dataset, Predictions, load_dataset, load_model
from pipelines.sociodemo.models.evaluate import compare, contest_score, metrics
from pipelines.sociodemo.models.split import split_users
from pipelines.sociodemo.models.train import train_and_evaluate
from pipelines.sociodemo.user_sets import build_user_sets
from pipelines.sociodemo.validate import staged_targets_path, validate_day, validate_targets
from pipelines.storage import DataRoot

SPEC = SociodemoSpec(seed=7, n_users=3_000, n_videos=1_500, n_authors=200, start=date(2024, 6, 1), days=14)
#: Small but honest settings, so the module stays well under a minute and a half on a shared 2-core machine.
PARAMS = {"catboost": {"iterations": 400, "learning_rate": 0.1, "depth": 4, "thread_count": 1},
          "deepsets": {"max_epochs": 30}}
NOISE = 0.1  # contest-score points a model may beat the oracle by on ~500 held-out users by chance


def _oracle(uids: np.ndarray) -> Predictions:
    return Predictions(uids, *oracle_probabilities(SPEC, uids))


@pytest.fixture(scope="module")
def built(tmp_path_factory, pg_dsn_module):
    """Generated, validated, built: (features uri, user sets uri, staged targets). Built once for the module."""
    root = tmp_path_factory.mktemp("sociodemo-models")
    write_dataset(SPEC, root)
    data_root = DataRoot(str(root))
    for day in SPEC.dates():
        validate_day(day, data_root)
    validate_targets(data_root)
    features = build_features(SPEC.end, data_root).uri
    sets = build_user_sets(SPEC.end, data_root, max_items=64)
    targets = pd.read_parquet(staged_targets_path(data_root))
    return features, sets, targets


@pytest.fixture(scope="module")
def trained(built, tmp_path_factory):
    features, sets, targets = built
    out = tmp_path_factory.mktemp("sociodemo-models-out")
    return out, train_and_evaluate(features, sets, targets, out, params=PARAMS, oracle_fn=_oracle)


def test_models_beat_topclass_and_not_the_oracle(trained):
    _, result = trained
    table = pd.DataFrame.from_dict(result["table"], orient="index")
    assert list(table.index) == ["topclass", "catboost", "deepsets", "oracle"]
    assert result["n_test"] == table.loc["oracle", "n"] > 300 and result["n_train"] > 1_000
    top, oracle = table.loc["topclass"], table.loc["oracle"]
    assert top["sex_roc_auc"] == pytest.approx(0.5)
    assert 2.0 < oracle["contest_score"] < 3
    for name in ("catboost", "deepsets"):
        row = table.loc[name]
        assert row["contest_score"] > top["contest_score"] + 0.5, name
        assert row["sex_roc_auc"] > 0.75 and row["age_f1_weighted"] > top["age_f1_weighted"], name
        assert row["contest_score"] < oracle["contest_score"] + NOISE, name
        assert row["share_of_oracle_contest_score"] == pytest.approx(row["contest_score"] / oracle["contest_score"])
    assert table.loc["catboost", "share_of_oracle_contest_score"] > 0.8
    fit = result["models"]["deepsets"]["fit"]
    assert fit["epochs"] >= 1 and fit["stopped"] in ("early_stopping", "max_epochs")  # never the time cap


def test_training_is_reproducible(built, tmp_path):
    """The same data and parameters give the same metrics, whatever the machine's load (budgets are epochs)."""
    features, sets, targets = built
    params = {"deepsets": {"max_epochs": 3}, "catboost": {"iterations": 60, "depth": 3, "thread_count": 1}}
    runs = [train_and_evaluate(features, sets, targets, tmp_path / str(i), models=("catboost", "deepsets"),
                               params=params) for i in range(2)]
    for name in ("catboost", "deepsets"):
        assert runs[0]["table"][name] == runs[1]["table"][name], name


def test_predictions_are_probabilities_and_round_trip(trained, built):
    _, result = trained
    features, sets, targets = built
    data = load_dataset(features, sets, targets)
    for name, info in result["models"].items():
        model = load_model(info["folder"])
        assert isinstance(model, MODELS[name]) and model.name == name
        first = model.predict(data)
        again = type(model).load(info["folder"]).predict(data)
        assert np.array_equal(first.uids, data.uids)
        assert first.p_male.shape == (len(data),) and first.p_age.shape == (len(data), 4)
        assert np.all((first.p_male > 0) & (first.p_male < 1)) and np.all((first.p_age > 0) & (first.p_age < 1))
        assert np.allclose(first.p_age.sum(axis=1), 1)
        assert np.array_equal(first.p_male, again.p_male) and np.array_equal(first.p_age, again.p_age)


def test_scoring_users_without_history_or_with_unknown_videos(trained, built):
    _, result = trained
    features, sets, _ = built
    known = pq.read_table(features, columns=["viewer_uid"])["viewer_uid"].to_numpy()[:5]
    data = load_dataset(features, sets, uids=np.concatenate([known, [1, 2]]))  # two users with no events
    data.sets.loc[0, "video_idx"] = [10**9] * len(data.sets.loc[0, "video_idx"])  # videos the model never saw
    assert data.sex is None and data.features.iloc[-2:].isna().all().all()
    for info in result["models"].values():
        pred = load_model(info["folder"]).predict(data)
        assert np.all(np.isfinite(pred.p_male)) and np.allclose(pred.p_age.sum(axis=1), 1)


def test_report_files_exist(trained):
    out, result = trained
    paths = [out / "report" / name for name in
             ("report.md", "roc_sex.png", "confusion_age_catboost.png", "feature_importance_catboost.png")]
    assert set(map(str, paths)) <= set(result["report"])
    for path in map(str, result["report"]):
        with open(path, "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n" if path.endswith(".png") else head
    report = (out / "report" / "report.md").read_text()
    assert "| oracle |" in report and "roc_sex.png" in report
    test = pd.read_csv(out / "report" / "metrics.csv", index_col="model")
    assert test.loc["oracle", "contest_score"] == pytest.approx(result["table"]["oracle"]["contest_score"])


def test_targets_are_the_generators_truth(built):
    features, sets, targets = built
    data = load_dataset(features, sets, targets)
    male, age_class, _ = truth(SPEC, data.uids)
    assert np.array_equal(data.sex, male.astype(int)) and np.array_equal(data.age_class, age_class)


def test_metrics_on_a_hand_computed_case():
    y_sex = np.array([1, 1, 0, 0])
    y_age = np.array([0, 1, 2, 2])
    # p_male ranks: positives 0.9, 0.4; negatives 0.6, 0.1 -> 3 of 4 pairs right, AUC 0.75, Gini 0.5.
    p_male = np.array([0.9, 0.4, 0.6, 0.1])
    p_age = np.array([[0.7, 0.1, 0.1, 0.1], [0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]])
    m = metrics(y_sex, y_age, Predictions(np.arange(4), p_male, p_age))
    assert m["sex_roc_auc"] == pytest.approx(0.75) and m["sex_gini"] == pytest.approx(0.5)
    assert m["sex_f1"] == pytest.approx(0.5)  # predicted male: 0.9 (right), 0.6 (wrong); precision = recall = 1/2
    # Age: predicted [0, 0, 2, 3]; F1 per class 0: 2/3, 1: 0, 2: 2/3; weights 1/4, 1/4, 2/4 -> 0.5.
    assert m["age_f1_weighted"] == pytest.approx(0.5) and m["age_accuracy"] == pytest.approx(0.5)
    assert m["contest_score"] == pytest.approx(2 * 0.5 + 0.5) == contest_score(0.5, 0.5)
    table = compare({"topclass": Predictions(np.arange(4), np.full(4, 0.5), np.full((4, 4), 0.25))}, y_sex, y_age,
                    oracle=Predictions(np.arange(4), p_male, p_age))
    assert table.loc["oracle", "share_of_oracle_contest_score"] == 1
    assert table.loc["topclass", "sex_roc_auc"] == 0.5


def test_split_is_deterministic_and_disjoint():
    uids = np.arange(100_000_000, 100_020_000, dtype=np.int64)
    train, valid, test = split_users(uids)
    assert not (train & valid).any() and not (train & test).any() and not (valid & test).any()
    assert (train | valid | test).all()
    assert abs(test.mean() - 0.2) < 0.02 and abs(valid.mean() - 0.1) < 0.02
    again = split_users(uids[::-1])  # order and company do not matter, only (uid, seed)
    assert np.array_equal(again[2][::-1], test)
    assert np.array_equal(split_users(uids[:500])[2], test[:500])
    assert not np.array_equal(split_users(uids, seed=1)[2], test)
    strings = np.array([f"user-{i}" for i in range(1_000)])
    assert np.array_equal(split_users(strings)[2], split_users(strings)[2])


def test_dataset_alignment():
    frame = pd.DataFrame({"viewer_uid": [3, 1, 2], "x": [30.0, 10.0, 20.0]})
    data = Dataset(uids=np.array([3, 1, 2]), features=frame.drop(columns="viewer_uid"), sets=None)
    assert data.subset(np.array([False, True, True])).features["x"].tolist() == [10.0, 20.0]

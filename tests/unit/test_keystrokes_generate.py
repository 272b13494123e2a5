"""The generator (challenge format, long tail, planted truth, determinism) and its oracle (the closed form against
a brute-force integral, and identification it gets right)."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from pipelines.keystrokes import schema
from pipelines.keystrokes.generate import (
    KeystrokeSpec,
    UserProfile,
    generate_dataset,
    make_profiles,
    type_attempt,
    write_dataset,
)
from pipelines.keystrokes.ingest import inspect_url
from pipelines.keystrokes.oracle import Oracle
from pipelines.keystrokes.replay import Attempt, check_attempt, replay

SPEC = KeystrokeSpec(n_users=40, mean_samples=20, seed=7, bad_rate=0.03, split_page_share=0.2)


@pytest.fixture(scope="module")
def data():
    return generate_dataset(SPEC)


def test_pages_follow_the_challenge_format(data):
    first = data.pages[data.first_page]
    assert data.first_page == f"user_{first['user_label']}.json"
    assert set(first) == {"user_data", "user_label", "next"}
    names, name = [], data.first_page
    while name is not None:  # one chain through every page, ending in null
        names.append(name)
        name = data.pages[name]["next"]
    assert sorted(names) == sorted(data.pages)
    event = first["user_data"][0][0]
    assert set(event) == {"character", "typed_at"} and len(event["typed_at"]) == len("2017-12-07T21:24:51.212000")
    labels = Counter(p["user_label"] for p in data.pages.values())
    assert any(n > 1 for n in labels.values())  # some users span several pages
    assert set(data.test) == {"attempts"} and len(data.test["attempts"]) == len(data.truth["test_labels"])


def test_long_tail_and_backspaces(data):
    counts = [p["n_samples"] for p in data.truth["profiles"]]
    assert min(counts) <= 5 and max(counts) >= 3 * np.median(counts)
    attempts = [a for p in data.pages.values() for a in p["user_data"] if isinstance(check_attempt(a), Attempt)]
    with_bs = sum(any(e["character"] == schema.BACKSPACE for e in a) for a in attempts)
    assert 0.2 < with_bs / len(attempts) < 0.9


def test_same_seed_same_data_other_seed_other_data(data):
    again = generate_dataset(SPEC)
    assert again.pages == data.pages and again.test == data.test
    other = generate_dataset(KeystrokeSpec(n_users=40, mean_samples=20, seed=8))
    assert other.first_page != data.first_page


def test_validation_finds_exactly_what_was_planted(tmp_path, data_root):
    write_dataset(SPEC, data_root / "gen")
    data = generate_dataset(SPEC)
    result = inspect_url("train", f"gen/pages/{data.first_page}", min_samples=1, max_bad_share=1.0)
    planted = Counter({k.split(":")[1]: v for k, v in data.truth["planted"].items() if k.startswith("train:")})
    found = Counter({r: n for r, n in result.reasons.items() if r != "wrong_phrase"})
    assert found == planted
    uncorrected = result.reasons.get("wrong_phrase", 0)  # typos left uncorrected (P_LEAVE): real, not planted
    assert 0 < uncorrected < 0.1 * result.rows_read
    assert result.rows_read == sum(len(p["user_data"]) for p in data.pages.values())
    assert result.rows_valid + result.rows_quarantined == result.rows_read


def _brute_force_log_likelihood(profile: dict, chars, times_us, nodes: int = 60) -> float:
    """log p(attempt | profile) by re-deriving each gap's mean from the generator's rules and integrating the
    attempt's shared speed shift z numerically (Gauss-Hermite) and its fatigue position over the same grid."""
    x = np.log(np.maximum(np.diff(np.asarray(times_us, dtype=float) / 1000), 0.5))
    means, length = [], 0
    for j, c in enumerate(chars):
        if j:
            prev = chars[j - 1]
            if c == schema.BACKSPACE:
                offset = profile["bs_repeat"] if prev == schema.BACKSPACE else profile["bs_first"]
            else:
                offset = profile["digraph"][min(length, len(schema.PHRASE) - 1)]
                offset += profile["resume"] if prev == schema.BACKSPACE else 0.0
            means.append(profile["mu"] + offset)
        length = max(length - 1, 0) if c == schema.BACKSPACE else length + 1
    means = np.array(means)
    z_nodes, z_weights = np.polynomial.hermite_e.hermegauss(nodes)
    total = 0.0
    for phi in np.linspace(0, 1, 9):
        for z, w in zip(z_nodes * profile["tau"], z_weights / math.sqrt(2 * math.pi), strict=True):
            r = x - means - profile["fatigue"] * phi - z
            total += w * math.exp(float(-0.5 * (r @ r) / profile["sigma"] ** 2
                                        - len(r) * math.log(profile["sigma"])))
    timing = math.log(total / 9)
    played = replay(chars)
    ks = [run - 1 for _, run in played.backspace_runs]
    decisions = played.n_events - played.backspaces - sum(ks)
    errors = len(ks) * math.log(profile["error_rate"]) + (decisions - len(ks)) * math.log(1 - profile["error_rate"])
    for (before, run), k in zip(played.backspace_runs, ks, strict=True):
        remaining = len(schema.PHRASE) - 1 - (before - run)
        errors += math.log(sum(profile["notice"][k:]) if k == remaining else profile["notice"][k])
    return timing + errors


def test_oracle_closed_form_matches_a_brute_force_integral():
    rng = np.random.default_rng(3)
    profiles = [p.__dict__ for p in make_profiles(3, rng, seed=3)]
    oracle = Oracle(profiles)
    checked = 0
    for i in range(40):
        typist = UserProfile.from_dict(profiles[i % 3])
        chars, times = type_attempt(typist, float(rng.random()), rng, 1_512_086_400_000_000)
        if replay(chars).text != schema.PHRASE:
            continue
        ll = oracle.log_likelihood(chars, times)
        for u, profile in enumerate(profiles):
            assert ll[u] == pytest.approx(_brute_force_log_likelihood(profile, chars, times), abs=1e-6)
        checked += 1
    assert checked >= 20


def test_oracle_identifies_most_attempts_and_is_not_perfect(data):
    attempts, labels = [], []
    for page in data.pages.values():
        for raw in page["user_data"]:
            checked = check_attempt(raw)
            if isinstance(checked, Attempt):
                attempts.append((checked.chars, checked.times_us))
                labels.append(page["user_label"])
    oracle = Oracle(data.truth["profiles"], sorted(set(labels)))
    proba = oracle.predict_proba(attempts[::3])
    truth = np.array([oracle.labels.index(lab) for lab in labels[::3]])
    accuracy = float((proba.argmax(axis=1) == truth).mean())
    assert 0.6 < accuracy < 0.99  # high, not trivial: there is room between the models and the ceiling
    assert np.allclose(proba.sum(axis=1), 1.0)


def test_truth_recognises_the_test_document(data):
    ids = data.truth["test_sample_ids"]
    assert len(ids) == len(data.test["attempts"])
    assert [i is None for i in ids] == [lab is None or not isinstance(check_attempt(a), Attempt)
                                        for a, lab in zip(data.test["attempts"], data.truth["test_labels"],
                                                          strict=True)]
    json.dumps(data.truth)  # serialisable as written

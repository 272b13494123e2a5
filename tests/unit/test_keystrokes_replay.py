"""Replay and latency extraction on hand-made attempts: plain typing, a backspace, a double backspace, a
correction at the very end, and every way an attempt is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.keystrokes import schema
from pipelines.keystrokes.features import FEATURE_NAMES, attempt_features, char_id, sequence
from pipelines.keystrokes.replay import Attempt, Rejected, check_attempt, format_time_us, parse_time_us, replay

PHRASE = schema.PHRASE
BS = schema.BACKSPACE
T0 = parse_time_us("2017-12-07T21:24:51.212000")


def events(keys: list[str], gaps_ms: list[float] | float = 100.0) -> list[dict]:
    """An attempt typing ``keys`` (``BS`` for a backspace) with the given gaps between presses."""
    gaps = [gaps_ms] * (len(keys) - 1) if isinstance(gaps_ms, int | float) else gaps_ms
    t, out = T0, []
    for i, key in enumerate(keys):
        if i:
            t += int(gaps[i - 1] * 1000)
        out.append({"character": key, "typed_at": format_time_us(t)})
    return out


def keys_of(text: str) -> list[str]:
    """``<`` stands for a backspace."""
    return [BS if c == "<" else c for c in text]


def feature(vector: np.ndarray, name: str) -> float:
    return float(vector[FEATURE_NAMES.index(name)])


def test_timestamps_round_trip_in_the_challenges_format():
    assert format_time_us(T0) == "2017-12-07T21:24:51.212000"
    assert parse_time_us("2017-12-07T22:24:51.212000+01:00") == T0  # an offset is converted to UTC


def test_plain_attempt_latencies_and_word_times():
    gaps = [100.0 + i for i in range(len(PHRASE) - 1)]
    attempt = check_attempt(events(list(PHRASE), gaps))
    assert isinstance(attempt, Attempt) and attempt.chars == tuple(PHRASE)
    played = replay(attempt.chars)
    assert played.text == PHRASE and played.kept == tuple(range(len(PHRASE)))
    assert (played.backspaces, played.deleted, played.corrections) == (0, 0, 0)
    f = attempt_features(attempt.chars, attempt.times_us)
    assert feature(f, "lat_01") == pytest.approx(math.log(100.0))
    assert feature(f, "lat_36") == pytest.approx(math.log(135.0))
    first, last = schema.WORDS[1]  # "Authentic."
    assert feature(f, "word_2") == pytest.approx(math.log(sum(gaps[first:last])))
    assert feature(f, "total_log_ms") == pytest.approx(math.log(sum(gaps)))
    assert feature(f, "chars_per_s") == pytest.approx(37 / (sum(gaps) / 1000))
    assert feature(f, "backspace_rate") == 0 and feature(f, "n_events") == 37


def test_one_backspace_the_latency_runs_from_the_backspace():
    # "Bx<e ...": the x is typed, deleted, and e retyped; e's latency runs from the backspace to the retyped e
    # (the correction itself shows in the counts and the reaction time, not as an outlier latency).
    keys = ["B", "x", BS, *PHRASE[1:]]
    attempt = check_attempt(events(keys, [100, 300, 200, *[100] * (len(PHRASE) - 2)]))
    played = replay(attempt.chars)
    assert played.text == PHRASE
    assert played.kept[:3] == (0, 3, 4)
    assert (played.backspaces, played.deleted, played.corrections) == (1, 1, 1)
    assert played.backspace_runs == ((2, 1),)
    f = attempt_features(attempt.chars, attempt.times_us)
    assert feature(f, "lat_01") == pytest.approx(math.log(200))
    assert feature(f, "lat_02") == pytest.approx(math.log(100))
    assert feature(f, "bs_reaction_log") == pytest.approx(math.log(300))
    assert feature(f, "backspace_rate") == pytest.approx(1 / len(keys))


def test_double_backspace_deletes_two_characters():
    keys = keys_of("Be Auth" + "xy<<" + PHRASE[7:])
    played = replay(keys)
    assert played.text == PHRASE
    assert (played.backspaces, played.deleted, played.corrections) == (2, 2, 1)
    assert played.backspace_runs == ((9, 2),)
    assert isinstance(check_attempt(events(keys)), Attempt)


def test_correction_at_the_end():
    keys = keys_of(PHRASE[:-1] + "," + "<" + ".")
    played = replay(keys)
    assert played.text == PHRASE and played.kept[-1] == len(keys) - 1
    attempt = check_attempt(events(keys, [100] * (len(keys) - 4) + [100, 400, 150]))
    f = attempt_features(attempt.chars, attempt.times_us)
    assert feature(f, "lat_36") == pytest.approx(math.log(150))
    assert feature(f, "word_6") == pytest.approx(math.log(100 * 5 + 100 + 400 + 150))  # the word keeps it all
    assert feature(f, "corrections") == 1


def test_backspace_on_an_empty_text_is_counted_and_harmless():
    played = replay(keys_of("<<" + PHRASE))
    assert played.text == PHRASE and played.backspace_on_empty == 2 and played.deleted == 0


def test_two_separate_corrections():
    keys = keys_of("Bx<e Ay<uthentic. Be Yourself. Be Typing.")
    played = replay(keys)
    assert played.text == PHRASE and played.corrections == 2 and played.backspace_runs == ((2, 1), (5, 1))


@pytest.mark.parametrize(("raw", "reason"), [
    ({"character": "B"}, "not_a_list"),
    ([], "empty_attempt"),
    ([{"character": "B", "typed_at": "2017-12-07T21:24:51.212000"}] * 401, "too_many_events"),
    ([{"character": "B"}], "malformed_event"),
    (["B"], "malformed_event"),
    ([{"character": 66, "typed_at": "2017-12-07T21:24:51.212000"}], "malformed_event"),
    ([{"character": "B\x00", "typed_at": "2017-12-07T21:24:51.212000"}], "control_characters"),
    ([{"character": "[shift]", "typed_at": "2017-12-07T21:24:51.212000"}], "malformed_event"),
    ([{"character": "B", "typed_at": "yesterday"}], "bad_timestamp"),
])
def test_structural_rejections(raw, reason):
    checked = check_attempt(raw)
    assert isinstance(checked, Rejected) and checked.reason == reason


def test_time_rules():
    ok = events(list(PHRASE))
    backwards = [dict(e) for e in ok]
    backwards[5]["typed_at"] = backwards[3]["typed_at"]
    assert check_attempt(backwards).reason == "time_backwards"
    gap = events(list(PHRASE), [100] * 10 + [31_000] + [100] * 25)
    assert check_attempt(gap).reason == "absurd_gap"
    assert isinstance(check_attempt(gap, max_gap_ms=60_000), Attempt)
    same_ms = events(list(PHRASE), 0)  # presses in the same millisecond are not going backwards
    assert isinstance(check_attempt(same_ms), Attempt)


def test_wrong_phrase_names_what_it_typed():
    checked = check_attempt(events(list(PHRASE.replace("Typing", "Tpying"))))
    assert checked.reason == "wrong_phrase" and "Tpying" in checked.detail
    assert check_attempt(events(keys_of(PHRASE + "x"))).reason == "wrong_phrase"


def test_sequence_encoding():
    keys = ["B", "x", BS, *PHRASE[1:]]
    attempt = check_attempt(events(keys, [100, 300, 200, *[100] * (len(PHRASE) - 2)]))
    ids, num = sequence(attempt.chars, attempt.times_us)
    assert ids[0] == char_id("B") and ids[2] == char_id(BS) and char_id(" ") == 3 and char_id("é") == 1
    assert num[0, 0] == 0 and num[2, 1] == 1 and num[2, 3] == 1 and num[3, 3] == 0
    assert num[2, 2] == pytest.approx(2 / len(PHRASE))  # the cursor before the backspace
    assert num[3, 2] == pytest.approx(1 / len(PHRASE))  # and after it
    with pytest.raises(ValueError, match="not a valid attempt"):
        attempt_features(tuple("Be"), (T0, T0 + 1000))

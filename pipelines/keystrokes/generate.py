"""Generated keystroke data in the challenge's paged JSON, with its planted truth (for the oracle).

Every user has a typing rhythm (:class:`UserProfile`):

* a base speed ``mu`` (log milliseconds between presses) and a per-press noise ``sigma`` (log scale);
* a digraph latency profile ``digraph[p]``: the log-time offset of typing the phrase character at cursor
  position ``p`` (shared difficulty of the key, e.g. a shifted capital, plus the user's own deviation);
* pauses at word boundaries (``pause``, added at spaces and the first letter of each word);
* a per-attempt speed shift (normal, std ``tau``, shared by every press of the attempt) and fatigue
  (``fatigue``: the log-time drift from the user's first to last attempt);
* error habits: a typo rate per key (``error_rate``), how many more keys are typed before the typo is noticed
  (``notice``, probabilities of 0..3), and the timing of backspaces (``bs_first``: the reaction before the
  first backspace; ``bs_repeat``: the following ones) and of the key typed after them (``resume``);
* a long-tailed number of attempts (a few users have one or two, a few have hundreds).

Every gap between two presses is log-normal with a mean fixed by the user and by what is observable about the
press (a character at cursor position ``p``, right after a backspace or not; a first or repeated backspace),
so :mod:`pipelines.keystrokes.oracle` can compute each user's exact likelihood of an observed attempt: the
ceiling of identification accuracy. A typo is left uncorrected with a small fixed probability (the attempt
then replays to the wrong phrase and is quarantined, as in the real data); ``bad_rate`` plants broken attempts
(empty, times going backwards, absurd gaps, malformed events, NUL characters, bad timestamps), counted in the
truth.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.keystrokes import schema
from pipelines.keystrokes.replay import format_time_us

L = len(schema.PHRASE)
#: Most keys typed after a typo before it is noticed (``notice`` has K_MAX + 1 probabilities).
K_MAX = 3
#: Probability that a typo is left uncorrected (the same for everyone, so it tells nothing about the user).
P_LEAVE = 0.03
#: Shortest gap the generator produces, ms (a truncation the likelihood can ignore: far in the tail).
MIN_GAP_MS = 5.0
START_US = 1_512_086_400_000_000  # 2017-12-01T00:00:00 UTC
BAD_KINDS = ("empty_attempt", "time_backwards", "absurd_gap", "malformed_event", "control_characters",
             "bad_timestamp")

_NEIGHBOURS = {
    "q": "wa", "w": "qes", "e": "wrd", "r": "etf", "t": "ryg", "y": "tuh", "u": "yij", "i": "uok", "o": "ipl",
    "p": "ol", "a": "qsz", "s": "awdz", "d": "sefx", "f": "drgc", "g": "fthv", "h": "gyjb", "j": "hukn",
    "k": "jilm", "l": "kop", "z": "asx", "x": "zsdc", "c": "xdfv", "v": "cfgb", "b": "vghn", "n": "bhjm",
    "m": "njk", " ": "bnmv", ".": ",l", ",": "m.",
}


@dataclass(frozen=True)
class KeystrokeSpec:
    """What to generate: users, attempts, the test document and planted bad attempts."""

    n_users: int = 300
    mean_samples: float = 24.0  # median attempts per user (log-normal, long tail both ways)
    samples_sigma: float = 0.8
    max_samples: int = 400
    test_share: float = 0.1  # of each eligible user's attempts, moved to the test document
    test_min_samples: int = 10  # users with fewer attempts have none in the test document
    split_page_share: float = 0.1  # users whose attempts span several pages
    bad_rate: float = 0.01  # planted broken attempts, share of all attempts
    seed: int = 42

    def __post_init__(self) -> None:
        if self.n_users < 1 or self.mean_samples <= 0 or self.max_samples < 1:
            raise ValueError("n_users, mean_samples and max_samples must be positive")
        for name in ("test_share", "split_page_share", "bad_rate"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1)")

    @property
    def name(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        return f"seed{self.seed}-u{self.n_users}-{digest}"


@dataclass
class UserProfile:
    """One user's planted rhythm (see the module docstring)."""

    label: str
    mu: float
    sigma: float
    tau: float
    fatigue: float
    pause: float
    digraph: list[float]  # L offsets, by cursor position
    error_rate: float
    notice: list[float]  # K_MAX + 1 probabilities
    bs_first: float
    bs_repeat: float
    resume: float
    n_samples: int

    @classmethod
    def from_dict(cls, data: dict) -> UserProfile:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def position_difficulty(seed: int) -> np.ndarray:
    """The log-time offset of each phrase position shared by everyone: shifted capitals, spaces, word starts,
    periods, and a fixed difficulty per key pair."""
    rng = np.random.default_rng([seed, 7])
    base = rng.normal(0.0, 0.12, L)
    for p, char in enumerate(schema.PHRASE):
        base[p] += 0.35 * char.isupper() + 0.15 * (char == " ") + 0.15 * (char == ".")
        base[p] += 0.10 * (p > 0 and schema.PHRASE[p - 1] == " ")
    return base


def _boundary() -> np.ndarray:
    """Positions where a word-boundary pause applies: spaces and the first letter of each word."""
    return np.array([c == " " or (p > 0 and schema.PHRASE[p - 1] == " ") for p, c in enumerate(schema.PHRASE)])


def make_profiles(n_users: int, rng: np.random.Generator, seed: int, mean_samples: float = 24.0,
                  samples_sigma: float = 0.8, max_samples: int = 400) -> list[UserProfile]:
    """``n_users`` random users (labels: 32 hex characters)."""
    shared = position_difficulty(seed)
    boundary = _boundary()
    profiles = []
    for _ in range(n_users):
        pause = abs(rng.normal(0.25, 0.2))
        digraph = shared + rng.normal(0.0, 0.16, L) + pause * boundary
        n = int(np.clip(round(math.exp(rng.normal(math.log(mean_samples), samples_sigma))), 1, max_samples))
        profiles.append(UserProfile(
            label=rng.bytes(16).hex(), mu=float(rng.normal(math.log(165.0), 0.2)),
            sigma=float(rng.uniform(0.22, 0.45)), tau=float(rng.uniform(0.04, 0.14)),
            fatigue=float(rng.normal(0.0, 0.12)), pause=float(pause), digraph=[float(v) for v in digraph],
            error_rate=float(rng.beta(1.2, 50.0)), notice=[float(v) for v in rng.dirichlet([3.0, 1.5, 0.7, 0.3])],
            bs_first=float(rng.normal(0.9, 0.3)), bs_repeat=float(rng.normal(-0.25, 0.2)),
            resume=float(rng.normal(0.35, 0.2)), n_samples=n))
    return profiles


def _typo(intended: str, rng: np.random.Generator) -> str:
    options = _NEIGHBOURS.get(intended.lower(), "asdfjkl")
    char = options[int(rng.integers(len(options)))]
    return char.upper() if intended.isupper() else char


class _Draws:
    """Random numbers drawn in blocks (one numpy call per block, not per key press): normals of std
    ``sigma``, or uniforms on [0, 1) when ``sigma`` is None."""

    def __init__(self, rng: np.random.Generator, sigma: float | None, block: int = 2 * L) -> None:
        self.rng, self.sigma, self.block = rng, sigma, block
        self.values: list[float] = []

    def next(self) -> float:
        if not self.values:
            draw = self.rng.random(self.block) if self.sigma is None else self.rng.normal(0.0, self.sigma, self.block)
            self.values = draw.tolist()[::-1]
        return self.values.pop()


def type_attempt(profile: UserProfile, phi: float, rng: np.random.Generator, t0_us: int) -> tuple[list[str], list[int]]:
    """One attempt of ``profile`` at fatigue position ``phi`` (0 = first attempt, 1 = last), starting at
    ``t0_us``: the characters and press times (µs, rounded to the millisecond as the challenge's are)."""
    digraph = profile.digraph
    base = profile.mu + profile.fatigue * phi + rng.normal(0.0, profile.tau)
    noise, coins = _Draws(rng, profile.sigma), _Draws(rng, None)
    chars: list[str] = []
    times: list[float] = []
    now = t0_us / 1000.0

    def press(char: str, offset: float) -> None:
        nonlocal now
        if chars:
            now += max(MIN_GAP_MS, math.exp(base + offset + noise.next()))
        chars.append(char)
        times.append(now)

    cursor, after_backspace = 0, False
    while cursor < L:
        resume = profile.resume if after_backspace else 0.0
        after_backspace = False
        if coins.next() < profile.error_rate:
            k = min(int(rng.choice(K_MAX + 1, p=profile.notice)), L - 1 - cursor)
            press(_typo(schema.PHRASE[cursor], rng), digraph[cursor] + resume)
            for j in range(1, k + 1):
                press(schema.PHRASE[cursor + j], digraph[cursor + j])
            if coins.next() < P_LEAVE:  # never noticed: the attempt types the wrong phrase
                cursor += k + 1
                continue
            press(schema.BACKSPACE, profile.bs_first)
            for _ in range(k):
                press(schema.BACKSPACE, profile.bs_repeat)
            after_backspace = True
            continue
        press(schema.PHRASE[cursor], digraph[cursor] + resume)
        cursor += 1
    return chars, [round(t) * 1000 for t in times]


def user_attempts(profile: UserProfile, rng: np.random.Generator, t_start_us: int | None = None
                  ) -> list[tuple[list[str], list[int]]]:
    """All of a user's attempts in order (fatigue grows from the first to the last), over a few weeks."""
    n = profile.n_samples
    t = START_US + int(rng.integers(0, 20 * 86_400)) * 1_000_000 if t_start_us is None else t_start_us
    out = []
    for s in range(n):
        phi = s / (n - 1) if n > 1 else 0.0
        out.append(type_attempt(profile, phi, rng, t))
        t += int(rng.uniform(20, 3600)) * 1_000_000  # the next attempt, 20 s to an hour later
    return out


def as_events(chars: list[str], times_us: list[int]) -> list[dict]:
    """An attempt in the challenge's JSON form."""
    return [{"character": c, "typed_at": format_time_us(t)} for c, t in zip(chars, times_us, strict=True)]


def break_attempt(events: list[dict], kind: str, rng: np.random.Generator) -> list[dict]:
    """A copy of a valid attempt broken in one way (:data:`BAD_KINDS`)."""
    events = [dict(e) for e in events]
    i = int(rng.integers(1, len(events)))
    if kind == "empty_attempt":
        return []
    if kind == "time_backwards":
        events[i - 1]["typed_at"], events[i]["typed_at"] = events[i]["typed_at"], events[i - 1]["typed_at"]
        if events[i - 1]["typed_at"] == events[i]["typed_at"]:  # same millisecond: push one back for sure
            events[i]["typed_at"] = "2017-11-30T00:00:00.000000"
        return events
    if kind == "absurd_gap":
        from pipelines.keystrokes.replay import parse_time_us

        for e in events[i:]:
            e["typed_at"] = format_time_us(parse_time_us(e["typed_at"]) + 600_000_000)  # ten minutes away
        return events
    if kind == "malformed_event":
        del events[i]["typed_at"]
        return events
    if kind == "control_characters":
        events[i]["character"] = "\x00"
        return events
    if kind == "bad_timestamp":
        events[i]["typed_at"] = "yesterday"
        return events
    raise ValueError(f"unknown kind {kind!r}")


@dataclass
class GeneratedDataset:
    """Pages (file name → document), the first page's name, the test document and the truth."""

    spec: KeystrokeSpec
    pages: dict[str, dict]
    first_page: str
    test: dict
    truth: dict = field(default_factory=dict)


def generate_dataset(spec: KeystrokeSpec) -> GeneratedDataset:
    """The training pages, the test document and their truth (profiles, test labels, planted counts)."""
    from pipelines.keystrokes.ingest import sample_id
    from pipelines.keystrokes.replay import Attempt, check_attempt

    rng = np.random.default_rng(spec.seed)
    profiles = make_profiles(spec.n_users, rng, spec.seed, spec.mean_samples, spec.samples_sigma, spec.max_samples)
    planted: Counter = Counter()
    train: dict[str, list[list[dict]]] = {}
    test_rows: list[tuple[list[dict], str | None]] = []
    for profile in profiles:
        attempts = [as_events(c, t) for c, t in user_attempts(profile, rng)]
        n_test = round(spec.test_share * len(attempts)) if len(attempts) >= spec.test_min_samples else 0
        test_idx = set(rng.choice(len(attempts), size=n_test, replace=False).tolist()) if n_test else set()
        train[profile.label] = [a for i, a in enumerate(attempts) if i not in test_idx]
        test_rows += [(attempts[i], profile.label) for i in sorted(test_idx)]

    def plant(events: list[dict], where: str) -> list[dict]:
        if spec.bad_rate and rng.random() < spec.bad_rate:
            kind = BAD_KINDS[int(rng.integers(len(BAD_KINDS)))]
            planted[f"{where}:{kind}"] += 1
            return break_attempt(events, kind, rng)
        return events

    for label, attempts in train.items():
        train[label] = [plant(a, "train") for a in attempts]
    order = rng.permutation(len(test_rows))
    test_attempts, test_labels = [], []
    for i in order:
        events, label = test_rows[int(i)]
        broken = plant(events, "test")
        test_attempts.append(broken)
        test_labels.append(label if broken is events else None)
    pages, first_page = _paginate(train, spec, rng)
    test_ids = []
    for events in test_attempts:
        checked = check_attempt(events)
        test_ids.append(sample_id("", checked) if isinstance(checked, Attempt) else None)
    truth = {
        "spec": asdict(spec),
        "test_sample_ids": test_ids,  # to recognise the test document however it is served
        "profiles": [asdict(p) for p in profiles],
        "position_difficulty": position_difficulty(spec.seed).tolist(),
        "test_labels": test_labels,  # None: a planted broken attempt
        "planted": dict(planted),
        "k_max": K_MAX, "p_leave": P_LEAVE,
    }
    return GeneratedDataset(spec=spec, pages=pages, first_page=first_page, test={"attempts": test_attempts},
                            truth=truth)


def _paginate(train: dict[str, list], spec: KeystrokeSpec, rng: np.random.Generator) -> tuple[dict[str, dict], str]:
    """One page per user, a few users over 2-3 pages (not next to each other), chained by ``next``; the chain
    starts with a user's first page."""
    named: list[tuple[str, str, list]] = []  # (file name, label, attempts)
    for label, attempts in train.items():
        parts = 1
        if len(attempts) >= 4 and rng.random() < spec.split_page_share:
            parts = int(rng.integers(2, 4))
        cuts = np.array_split(np.arange(len(attempts)), parts)
        for k, idx in enumerate(cuts):
            name = f"user_{label}.json" if k == 0 else f"user_{label}_{k + 1}.json"
            named.append((name, label, [attempts[i] for i in idx]))
    order = [int(i) for i in rng.permutation(len(named))]
    firsts = [i for i in order if "_" not in named[i][0][len("user_"):]]
    order.remove(firsts[0])
    order.insert(0, firsts[0])
    pages = {}
    for pos, i in enumerate(order):
        name, label, attempts = named[i]
        nxt = named[order[pos + 1]][0] if pos + 1 < len(order) else None
        pages[name] = {"user_data": attempts, "user_label": label, "next": nxt}
    return pages, named[order[0]][0]


def write_dataset(spec: KeystrokeSpec, folder: Path) -> dict[str, Any]:
    """Write ``pages/*.json``, ``test.json``, ``truth.json`` and ``spec.json`` into ``folder``."""
    data = generate_dataset(spec)
    pages_dir = Path(folder) / "pages"
    pages_dir.mkdir(parents=True, exist_ok=True)
    for name, doc in data.pages.items():
        (pages_dir / name).write_text(json.dumps(doc))
    (Path(folder) / "test.json").write_text(json.dumps(data.test))
    (Path(folder) / "truth.json").write_text(json.dumps(data.truth))
    (Path(folder) / "spec.json").write_text(json.dumps(asdict(spec), indent=2))
    return summary(data)


def summary(data: GeneratedDataset) -> dict[str, Any]:
    counts = Counter(p["user_label"] for p in data.pages.values())
    attempts = sum(len(p["user_data"]) for p in data.pages.values())
    return {"name": data.spec.name, "users": len(data.truth["profiles"]), "pages": len(data.pages),
            "users_on_several_pages": sum(1 for n in counts.values() if n > 1), "train_attempts": attempts,
            "test_attempts": len(data.test["attempts"]), "planted": data.truth["planted"],
            "first_page": data.first_page}


def simulate(n_users: int, seed: int, samples: int | None = None, mean_samples: float = 24.0,
             samples_sigma: float = 0.8, max_samples: int = 400, profile_seed: int | None = None
             ) -> tuple[list[UserProfile], list[tuple[int, tuple[str, ...], tuple[int, ...]]]]:
    """Users and their *valid* attempts in memory, without JSON pages (for benchmarks at scales where the pages
    would be too big to write): ``(profiles, [(user index, chars, press times µs), ...])``. ``samples`` fixes
    every user's number of attempts (else the long-tailed draw); attempts that replay to a wrong phrase (an
    uncorrected typo) are left out, as ingestion would quarantine them."""
    from pipelines.keystrokes.replay import replay

    rng = np.random.default_rng(seed)
    profiles = make_profiles(n_users, rng, seed if profile_seed is None else profile_seed, mean_samples,
                             samples_sigma, max_samples)
    out = []
    for u, profile in enumerate(profiles):
        if samples is not None:
            profile.n_samples = samples
        for chars, times in user_attempts(profile, rng):
            if replay(chars).text == schema.PHRASE:
                out.append((u, tuple(chars), tuple(times)))
    return profiles, out

"""The recommendation pipeline's contracts: raw Last.fm-360K files, staged Parquet, and what is served.

Raw drops (one full snapshot a day, the Last.fm 360K formats, tab-separated, no header, UTF-8):

* ``usersha1-artmbid-artname-plays.tsv``: user sha1, artist MusicBrainz id (often empty), artist name, plays
* ``usersha1-profile.tsv``: user sha1, gender (``m``/``f``/empty), age, country, signup date (``Feb 1, 2007``)

Staged Parquet (``recs/staged/dt=YYYY-MM-DD/``), dense integer ids so matrices index straight into them:

* ``interactions.parquet``: ``user_idx`` int32, ``artist_idx`` int32, ``plays`` int64; one row per
  (user, artist) after duplicates are merged, sorted by ``user_idx``
* ``users.parquet``: ``user_idx`` int32 (0..U-1, in ``user_id`` order), ``user_id`` str, ``gender`` str|null,
  ``age`` int16|null, ``age_band`` str|null, ``country`` str|null, ``signup_date`` date|null,
  ``has_profile`` bool, ``n_artists`` int32 (users with a profile and no plays are kept: they are cold starts)
* ``artists.parquet``: ``artist_idx`` int32 (0..A-1, in ``artist_key`` order), ``artist_key`` str,
  ``artist_name`` str (the most common spelling), ``mbid`` str|null (the most common one), ``listeners``
  int32, ``plays`` int64
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

PIPELINE = "recs"

PLAYS_FILE = "usersha1-artmbid-artname-plays.tsv"
PROFILE_FILE = "usersha1-profile.tsv"
PLAYS_COLUMNS = ("user_id", "mbid", "artist_name", "plays")
PROFILE_COLUMNS = ("user_id", "gender", "age", "country", "signup")

USER_ID_PATTERN = r"^[0-9a-f]{40}$"
USER_ID_RE = re.compile(USER_ID_PATTERN)

#: Plays above this are not listening but scrobbler bugs or bots: quarantined.
MAX_PLAUSIBLE_PLAYS = 1_000_000
#: Ages outside this range are treated as unknown (the profile row is kept).
AGE_RANGE = (10, 90)
#: Age bands for profile similarity and cold-start groups: (label, lowest age, highest age).
AGE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("<18", 0, 17), ("18-24", 18, 24), ("25-34", 25, 34), ("35-44", 35, 44), ("45-54", 45, 54), ("55+", 55, 200),
)

_SPACE_RE = re.compile(r"\s+")


def raw_rel_dir(day: date) -> str:
    return f"recs/raw/dt={day.isoformat()}"


def staged_rel_dir(day: date) -> str:
    return f"recs/staged/dt={day.isoformat()}"


def truth_rel_dir(seed: int) -> str:
    """Where the generator keeps its planted truth (synthetic data only): tastes, genres, popularity."""
    return f"recs/truth/seed={seed}"


#: Quarantine reasons of the ingest. Bad rows are dropped (a line gets the first that applies, in this order);
#: the others record a repair of a row that is kept, and do not count towards the bad-row share.
PLAYS_BAD_REASONS = ("malformed_line", "bad_user_id", "missing_artist", "bad_plays", "nonpositive_plays",
                     "absurd_plays")
PROFILE_BAD_REASONS = ("malformed_line", "bad_user_id")
BENIGN_REASONS = frozenset({"tab_in_name_repaired", "duplicate_merged", "duplicate_profile", "bad_gender_nulled",
                            "bad_age_nulled", "bad_signup_nulled", "user_without_profile"})
REASONS = (*PLAYS_BAD_REASONS, *sorted(BENIGN_REASONS))
SIGNUP_FORMAT = "%b %d, %Y"  # "Feb 1, 2007" (strptime accepts the unpadded day)
GENDERS = ("m", "f")


def model_rel_dir(version: str) -> str:
    """Everything one version computes: neighbours, recommendation shards, evaluation report."""
    return f"recs/versions/{version}"


def clean_artist_name(name: str) -> str:
    """Display form: Unicode NFKC (full-width letters, ligatures, composed accents), control characters and
    tabs turned to spaces, whitespace collapsed and trimmed."""
    name = unicodedata.normalize("NFKC", name)
    name = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in name)
    return _SPACE_RE.sub(" ", name).strip()


def artist_key(name: str) -> str:
    """The identity of an artist: its cleaned name, case-folded. MusicBrainz ids are kept as an attribute
    only, since most rows lack one and a key mixing ids and names would split one artist in two."""
    return clean_artist_name(name).casefold()


def age_band(age: int | None) -> str | None:
    if age is None:
        return None
    for label, low, high in AGE_BANDS:
        if low <= age <= high:
            return label
    return None


@dataclass(frozen=True)
class RecItem:
    """One recommended artist."""

    artist: str  # display name
    score: float
    mbid: str | None = None


@dataclass
class RecRecord:
    """What is stored per user (or per fallback group) and version, and what the API returns."""

    user_id: str
    version: str
    generated_on: str  # ISO date of the snapshot the version was computed from
    source: str  # "user_user_cf", "fallback:country_age", "fallback:country", "fallback:global", ...
    items: list[RecItem] = field(default_factory=list)


def fallback_key(country: str | None = None, band: str | None = None) -> str:
    """Storage key of a cold-start list: by country and age band, by country, or global (``*`` = any)."""
    return f"#fallback#{country or '*'}#{band or '*'}"

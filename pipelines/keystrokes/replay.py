"""Check an attempt's key events and replay them into the text they type.

A raw attempt is a list of ``{"character", "typed_at"}`` objects. :func:`check_attempt` either returns the
parsed :class:`Attempt` (characters and press times in microseconds since the epoch, UTC) or the first
quarantine reason that applies, with a detail. :func:`replay` applies the events to an empty text with the
cursor at its end (a ``[backspace]`` removes the character before it; on an empty text it does nothing) and
keeps what published solutions threw away: how many backspaces, how many characters were typed then deleted,
how many separate corrections, and for each surviving character which event typed it (its press time is the
one latencies are measured from).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipelines.keystrokes import schema

_CONTROL_RE = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Attempt:
    """A structurally valid attempt: one character (or ``[backspace]``) and one press time per event."""

    chars: tuple[str, ...]
    times_us: tuple[int, ...]  # press times, microseconds since 1970-01-01 UTC

    def __len__(self) -> int:
        return len(self.chars)


@dataclass(frozen=True)
class Replay:
    """What an attempt types, and how."""

    text: str
    kept: tuple[int, ...]  # for each character of ``text``, the index of the event that typed it
    n_events: int
    backspaces: int  # every [backspace] event, including those on an empty text
    deleted: int  # characters typed, then deleted
    corrections: int  # runs of consecutive backspaces: separate corrections
    backspace_on_empty: int  # backspaces with nothing to delete
    backspace_runs: tuple[tuple[int, int], ...] = ()  # (text length before the run, run length) per correction


@dataclass(frozen=True)
class Rejected:
    """Why an attempt is not valid: a reason of :data:`~pipelines.keystrokes.schema.REASONS` and a detail."""

    reason: str
    detail: str


def replay(chars: tuple[str, ...] | list[str]) -> Replay:
    """Apply the events to an empty text (cursor at the end)."""
    text: list[str] = []
    source: list[int] = []
    backspaces = deleted = corrections = on_empty = 0
    runs: list[tuple[int, int]] = []
    run_start_len, run_len = 0, 0
    previous_backspace = False
    for i, char in enumerate(chars):
        if char == schema.BACKSPACE:
            backspaces += 1
            if not previous_backspace:
                corrections += 1
                run_start_len, run_len = len(text), 0
            run_len += 1
            if text:
                text.pop()
                source.pop()
                deleted += 1
            else:
                on_empty += 1
            previous_backspace = True
        else:
            if previous_backspace:
                runs.append((run_start_len, run_len))
            text.append(char)
            source.append(i)
            previous_backspace = False
    if previous_backspace:
        runs.append((run_start_len, run_len))
    return Replay(text="".join(text), kept=tuple(source), n_events=len(chars), backspaces=backspaces,
                  deleted=deleted, corrections=corrections, backspace_on_empty=on_empty, backspace_runs=tuple(runs))


def parse_time_us(text: str) -> int:
    """An ISO timestamp as microseconds since the epoch; naive times are UTC (as the challenge's are)."""
    moment = datetime.fromisoformat(text)
    delta = moment - (_EPOCH_NAIVE if moment.tzinfo is None else _EPOCH)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


def format_time_us(us: int) -> str:
    """Microseconds since the epoch in the challenge's format (``2017-12-07T21:24:51.212000``, naive UTC)."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_attempt(raw: Any, max_gap_ms: float = schema.MAX_GAP_MS) -> Attempt | Rejected:
    """The parsed attempt, or the first reason it is not a valid typing of the phrase.

    Checked in this order: the structure (``not_a_list``, ``empty_attempt``, ``too_many_events``,
    ``malformed_event`` for an event that is not an object with string ``character`` and ``typed_at``), control
    characters in any field (``control_characters``: NUL never reaches PostgreSQL), keys (``malformed_event``
    for a ``character`` that is neither one character nor ``[backspace]``), times (``bad_timestamp``,
    ``time_backwards``, ``absurd_gap``), then the replayed text (``wrong_phrase``). One pass per check over
    plain lists: this runs for every attempt of every page.
    """
    if not isinstance(raw, list):
        return Rejected("not_a_list", f"an attempt must be a list of key events, got {type(raw).__name__}")
    if not raw:
        return Rejected("empty_attempt", "no key events")
    if len(raw) > schema.MAX_EVENTS:
        return Rejected("too_many_events", f"{len(raw)} events (more than {schema.MAX_EVENTS})")
    chars: list[str] = []
    stamps: list[str] = []
    for i, event in enumerate(raw):
        if not isinstance(event, dict):
            return Rejected("malformed_event", f"event {i} is a {type(event).__name__}, not an object")
        char, typed = event.get("character"), event.get("typed_at")
        if not isinstance(char, str) or not isinstance(typed, str):
            missing = [k for k, v in (("character", char), ("typed_at", typed)) if not isinstance(v, str)]
            return Rejected("malformed_event", f"event {i}: {' and '.join(missing)} missing or not a string "
                                               f"({_short(event)})")
        chars.append(char)
        stamps.append(typed)
    if _CONTROL_RE.search("".join(chars)) or _CONTROL_RE.search("".join(stamps)):
        i = next(i for i, (c, t) in enumerate(zip(chars, stamps, strict=True))
                 if _CONTROL_RE.search(c) or _CONTROL_RE.search(t))
        return Rejected("control_characters", f"event {i} holds a control character")
    for i, char in enumerate(chars):
        if len(char) != 1 and char != schema.BACKSPACE:
            return Rejected("malformed_event", f"event {i}: unknown key {_short(char, 40)}")
    try:
        times = [parse_time_us(t) for t in stamps]
    except (ValueError, OverflowError):
        for i, t in enumerate(stamps):
            try:
                parse_time_us(t)
            except (ValueError, OverflowError):
                return Rejected("bad_timestamp", f"event {i}: typed_at {_short(t, 40)} is not an ISO timestamp")
        raise
    limit_us = max_gap_ms * 1000
    previous = times[0]
    for i in range(1, len(times)):
        gap = times[i] - previous
        if gap < 0:
            return Rejected("time_backwards", f"event {i} was typed {-gap / 1000:.1f} ms before event {i - 1}")
        if gap > limit_us:
            return Rejected("absurd_gap", f"{gap / 1e6:.1f} s between events {i - 1} and {i} (more than "
                                          f"{max_gap_ms / 1000:.0f} s)")
        previous = times[i]
    text = replay(chars).text
    if text != schema.PHRASE:
        return Rejected("wrong_phrase", f"replays to {_short(text, 60)}")
    return Attempt(chars=tuple(chars), times_us=tuple(times))

"""The HTML templates of the page and the reports (Jinja2, autoescaped: every value a pipeline or an input
wrote is text, never markup), with the few filters they share."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
STATIC = HERE / "static"


def fmt_number(value: Any, digits: int = 4) -> str:
    """A metric for people: 4 significant digits, integers with separators, n/a for missing."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if value == int(value) and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:.{digits}g}"
    return str(value)


def fmt_time(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if value.tzinfo else "")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def fmt_duration(start: datetime | None, end: datetime | None) -> str:
    if not start or not end:
        return ""
    seconds = (end - start).total_seconds()
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_json(value: Any, limit: int = 20_000) -> str:
    text = json.dumps(value, indent=2, default=str, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit:,} more characters)"


def fmt_share(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2%}"


@cache
def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=fmt_number, time=fmt_time, json=fmt_json, share=fmt_share)
    env.globals.update(duration=fmt_duration)
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


@cache
def stylesheet() -> str:
    return (STATIC / "ops.css").read_text()

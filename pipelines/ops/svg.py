"""Charts as inline SVG, drawn on the server: nothing to download, no JavaScript, text people can select.

Three shapes cover the page: grouped bars (every model of every training beside its baselines, the oracle as
a ceiling mark), stacked bars over partitions (rows valid and quarantined per day, a rejected or warned day
marked) and a line over partitions (the bad share against its warning level and threshold). Every text is
escaped; every bar has a ``<title>`` (its exact value on hover).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
ORACLE = "#d62728"
VALID, BAD, BENIGN = "#4c78a8", "#f58518", "#bab0ac"
WARN, REJECT = "#f2a900", "#d62728"
FONT = "font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif"


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.1f}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.0f}k"
    if magnitude >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    step = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * step:
            step *= mult
            break
    ticks = [round(math.floor(low / step) * step, 12)]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks if len(ticks) > 1 else [ticks[0], round(ticks[0] + step, 12)]


def _open(width: int, height: int, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
            f'role="img" aria-label="{escape(title)}" class="chart" style="{FONT};font-size:11px">',
            f"<title>{escape(title)}</title>",
            f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" style="font-size:13px;font-weight:600">'
            f"{escape(title)}</text>"]


def _y_axis(out: list[str], ticks: list[float], y, left: int, right: int, label: str) -> None:
    for t in ticks:
        yy = y(t)
        out.append(f'<line x1="{left}" x2="{right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="#555">{_fmt(t)}</text>')
    mid = (y(ticks[0]) + y(ticks[-1])) / 2
    out.append(f'<text transform="translate(12,{mid:.0f}) rotate(-90)" text-anchor="middle" fill="#555">'
               f"{escape(label)}</text>")


def _legend(out: list[str], items: Sequence[tuple[str, str, str]], x: int, y: int, width: int) -> None:
    """Legend entries ``(label, colour, shape)`` laid out left to right, wrapping."""
    cx, cy = x, y
    for label, colour, shape in items:
        w = 22 + 6.5 * len(label)
        if cx + w > x + width:
            cx, cy = x, cy + 16
        if shape == "line":
            out.append(f'<line x1="{cx}" x2="{cx + 14}" y1="{cy - 4}" y2="{cy - 4}" stroke="{colour}" '
                       'stroke-width="2" stroke-dasharray="4 2"/>')
        else:
            out.append(f'<rect x="{cx}" y="{cy - 10}" width="12" height="10" fill="{colour}"/>')
        out.append(f'<text x="{cx + 18}" y="{cy}">{escape(label)}</text>')
        cx += w


def _short(label: str, n: int = 18) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def grouped_bars(categories: Sequence[str], series: dict[str, Sequence[float | None]], *, title: str,
                 y_label: str, ceiling: Sequence[float | None] | None = None, ceiling_label: str = "oracle",
                 width: int = 900, height: int = 340) -> str:
    """Bars per category (a training) and series (a model); ``ceiling`` draws the oracle above each group."""
    out = _open(width, height, title)
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    values += [v for v in (ceiling or []) if v is not None and math.isfinite(v)]
    if not categories or not values:
        out.append(f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="#777">'
                   "no metric recorded yet</text></svg>")
        return "".join(out)
    left, right, top, bottom = 60, width - 12, 40, height - 80
    ticks = nice_ticks(min(0.0, min(values)), max(values))
    lo, hi = ticks[0], ticks[-1]

    def y(v: float) -> float:
        return bottom - (v - lo) / (hi - lo) * (bottom - top)

    _y_axis(out, ticks, y, left, right, y_label)
    names = list(series)
    group_w = (right - left) / len(categories)
    bar_w = max(2.0, min(28.0, group_w * 0.8 / max(len(names), 1)))
    for i, cat in enumerate(categories):
        gx = left + i * group_w + (group_w - bar_w * len(names)) / 2
        for j, name in enumerate(names):
            v = series[name][i] if i < len(series[name]) else None
            if v is None or not math.isfinite(v):
                continue
            x0, y0 = gx + j * bar_w, y(max(v, lo))
            base = y(max(lo, 0.0)) if lo <= 0 else y(lo)
            top_y, h = min(y0, base), abs(base - y0)
            out.append(f'<rect x="{x0:.1f}" y="{top_y:.1f}" width="{bar_w - 1:.1f}" height="{max(h, 0.5):.1f}" '
                       f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(cat)} · {escape(name)}: '
                       f"{v:.6g}</title></rect>")
        c = ceiling[i] if ceiling and i < len(ceiling) else None
        if c is not None and math.isfinite(c):
            x0, x1 = left + i * group_w + group_w * 0.06, left + (i + 1) * group_w - group_w * 0.06
            out.append(f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{y(c):.1f}" y2="{y(c):.1f}" stroke="{ORACLE}" '
                       f'stroke-width="2" stroke-dasharray="5 3"><title>{escape(cat)} · {escape(ceiling_label)}: '
                       f"{c:.6g}</title></line>")
        cx = left + (i + 0.5) * group_w
        out.append(f'<text x="{cx:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#333">'
                   f"<title>{escape(cat)}</title>{escape(_short(cat, max(6, int(group_w / 6.5))))}</text>")
    out.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#999"/>')
    items = [(n, PALETTE[j % len(PALETTE)], "bar") for j, n in enumerate(names)]
    if ceiling and any(c is not None for c in ceiling):
        items.append((f"{ceiling_label} (ceiling)", ORACLE, "line"))
    _legend(out, items, left, bottom + 38, right - left)
    out.append("</svg>")
    return "".join(out)


def stacked_rows(labels: Sequence[str], valid: Sequence[float], bad: Sequence[float], benign: Sequence[float],
                 flags: Sequence[str | None], *, title: str, width: int = 900, height: int = 300) -> str:
    """Rows per partition: valid, quarantined as bad, quarantined benign; a flag (``warning``, ``rejected``,
    ``failed``) marks a day above its bar so it stands out."""
    out = _open(width, height, title)
    totals = [(v or 0) + (b or 0) + (n or 0) for v, b, n in zip(valid, bad, benign, strict=True)]
    if not labels or not any(totals):
        out.append(f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="#777">'
                   "no ingest run recorded yet</text></svg>")
        return "".join(out)
    left, right, top, bottom = 60, width - 12, 34, height - 64
    ticks = nice_ticks(0, max(totals))
    hi = ticks[-1]

    def y(v: float) -> float:
        return bottom - v / hi * (bottom - top)

    _y_axis(out, ticks, y, left, right, "rows")
    step = (right - left) / len(labels)
    bar_w = max(2.0, min(36.0, step * 0.75))
    every = max(1, math.ceil(len(labels) / max(1, (right - left) // 70)))
    for i, label in enumerate(labels):
        x0 = left + i * step + (step - bar_w) / 2
        base = bottom
        for value, colour, what in ((valid[i], VALID, "valid"), (benign[i], BENIGN, "quarantined (benign)"),
                                    (bad[i], BAD, "quarantined (bad)")):
            if not value:
                continue
            h = bottom - y(value)
            out.append(f'<rect x="{x0:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{max(h, 0.8):.1f}" '
                       f'fill="{colour}"><title>{escape(label)}: {int(value):,} {what}</title></rect>')
            base -= h
        flag = flags[i]
        if flag:
            colour = WARN if flag == "warning" else REJECT
            cx = x0 + bar_w / 2
            shape = f"M{cx - 6:.1f},{base - 4:.1f} L{cx + 6:.1f},{base - 4:.1f} L{cx:.1f},{base - 14:.1f} Z"
            out.append(f'<path d="{shape}" fill="{colour}"><title>{escape(label)}: {escape(flag)}</title></path>')
        if i % every == 0 or i == len(labels) - 1:
            out.append(f'<text x="{x0 + bar_w / 2:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#333">'
                       f"{escape(_short(label, 12))}</text>")
    out.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#999"/>')
    _legend(out, [("valid", VALID, "bar"), ("quarantined: bad", BAD, "bar"), ("quarantined: benign", BENIGN, "bar"),
                  ("warning", WARN, "bar"), ("rejected / failed", REJECT, "bar")], left, bottom + 36, right - left)
    out.append("</svg>")
    return "".join(out)


def share_line(labels: Sequence[str], shares: Sequence[float | None], *, warn: float | None, limit: float | None,
               title: str, width: int = 900, height: int = 220) -> str:
    """The bad share per partition, with the warning level and the rejection threshold as dashed lines."""
    out = _open(width, height, title)
    points = [s for s in shares if s is not None]
    if not labels or not points:
        out.append(f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="#777">'
                   "no ingest run recorded yet</text></svg>")
        return "".join(out)
    left, right, top, bottom = 60, width - 12, 30, height - 44
    ticks = nice_ticks(0, max([*points, *(v for v in (warn, limit) if v)]) or 0.01)
    hi = ticks[-1]

    def y(v: float) -> float:
        return bottom - v / hi * (bottom - top)

    _y_axis(out, ticks, y, left, right, "bad share")
    step = (right - left) / len(labels)
    coords = [(left + (i + 0.5) * step, y(s), s, labels[i]) for i, s in enumerate(shares) if s is not None]
    out.append('<polyline fill="none" stroke="#444" stroke-width="1.5" points="'
               + " ".join(f"{x:.1f},{yy:.1f}" for x, yy, _, _ in coords) + '"/>')
    for x, yy, s, label in coords:
        colour = REJECT if limit is not None and s > limit else WARN if warn is not None and s >= warn else "#444"
        out.append(f'<circle cx="{x:.1f}" cy="{yy:.1f}" r="3.5" fill="{colour}"><title>{escape(label)}: '
                   f"{s:.2%}</title></circle>")
    for value, colour, name in ((warn, WARN, "warning level"), (limit, REJECT, "rejection threshold")):
        if value:
            out.append(f'<line x1="{left}" x2="{right}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="{colour}" '
                       f'stroke-dasharray="6 3"><title>{name}: {value:.2%}</title></line>')
    out.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#999"/>')
    _legend(out, [("bad share", "#444", "line"), ("warning level", WARN, "line"),
                  ("rejection threshold", REJECT, "line")], left, bottom + 30, right - left)
    out.append("</svg>")
    return "".join(out)

"""The report's charts as inline SVG, drawn here rather than by a charting library: the file stays
a few tens of KB (plotly's embedded JS alone is ~4.6 MB), needs no JavaScript to display (it
prints, opens in a mail client or a locked-down browser, and the DOM holds the charts as they
are drawn), and adds no dependency. Each chart is a handful of shapes (areas, bars, points).

Each function returns one <svg> with a viewBox, so it scales to the page width. Shapes carry a
<title>: the browser shows the exact numbers on hover, without JavaScript.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html import escape

from yieldmeter.report_format import count, usd, usd_short

# Colour-blind-safe categorical palette (Okabe-Ito, plus two greys for "other").
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999", "#666666")
FLAG = "#C0392B"  # tokenmaxxing flags and "no outcome" warnings
WIDTH = 1000


def _f(x: float) -> str:
    return f"{x:.1f}"


def nice_ticks(high: float, n: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 × 10^k) up to at least ``high``."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(math.ceil(high / step - 1e-9)) + 1)]


def stacked_area(times: list[datetime], series: list[tuple[str, list[Decimal], str]], hourly: bool) -> str:
    left, right, top, bottom, height = 64, 12, 12, 34, 300
    pw, ph = WIDTH - left - right, height - top - bottom
    n = len(times)
    stacks, base = [], [0.0] * n
    for label, values, colour in series:
        upper = [b + float(v) for b, v in zip(base, values)]
        stacks.append((label, values, colour, base, upper))
        base = upper
    ticks = nice_ticks(max(base) if base else 0)
    y_max = ticks[-1]

    def x(i: float) -> float:
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v: float) -> float:
        return top + ph - ph * v / y_max

    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="spend over time">']
    for tick in ticks:
        out.append(f'<line class="grid" x1="{left}" x2="{WIDTH - right}" y1="{_f(y(tick))}" y2="{_f(y(tick))}"/>'
                   f'<text class="axis" x="{left - 6}" y="{_f(y(tick) + 4)}" text-anchor="end">'
                   f"{usd_short(tick)}</text>")
    # x labels: each midnight (hourly) or about eight dates (daily)
    every = max(1, n // 8)
    for i, t in enumerate(times):
        if (hourly and t.hour == 0) or (not hourly and i % every == 0):
            out.append(f'<line class="grid" x1="{_f(x(i))}" x2="{_f(x(i))}" y1="{top}" y2="{top + ph}"/>'
                       f'<text class="axis" x="{_f(x(i))}" y="{height - 12}" text-anchor="middle">'
                       f'{t:%a %d %b}</text>')
    for label, values, colour, lower, upper in stacks:
        points = [f"{_f(x(i))},{_f(y(upper[i]))}" for i in range(n)]
        points += [f"{_f(x(i))},{_f(y(lower[i]))}" for i in reversed(range(n))]
        total = sum(values, Decimal(0))
        out.append(f'<path class="area" d="M{" L".join(points)} Z" fill="{colour}">'
                   f"<title>{escape(label)}: {usd(total)} in the period</title></path>")
    out.append(f'<line class="axis-line" x1="{left}" x2="{WIDTH - right}" y1="{top + ph}" y2="{top + ph}"/>')
    out.append("</svg>")
    return "".join(out)


def hbars(bars: list[tuple[str, Decimal | None, str, str]], colour: str) -> str:
    """Horizontal bars: (label, value or None for "no outcome", text after the bar, tooltip)."""
    row, top, char = 26, 6, 6.9  # char: the average width of a 12px character
    label_w = min(420, max(120, int(max(len(b[0]) for b in bars) * char) + 24))
    text_w = min(380, max(120, int(max(len(b[2]) for b in bars) * char) + 16))
    height = top * 2 + row * len(bars)
    pw = WIDTH - label_w - text_w
    high = max((float(v) for _, v, _, _ in bars if v is not None), default=1.0) or 1.0
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="bar chart">',
           '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           f'patternTransform="rotate(45)"><rect width="3" height="6" fill="{FLAG}" opacity="0.55"/>'
           "</pattern></defs>"]
    for i, (label, value, text, tip) in enumerate(bars):
        y0 = top + i * row
        fits = int((label_w - 12) / char)
        short = label if len(label) <= fits else label[: fits - 1] + "…"
        out.append(f'<g><title>{escape(tip)}</title>'
                   f'<text class="label" x="{label_w - 8}" y="{y0 + 17}" text-anchor="end">{escape(short)}</text>')
        if value is None:
            # as long as the longest bar: this spend bought nothing, so no cost per outcome is high enough
            out.append(f'<rect class="none" x="{label_w}" y="{y0 + 4}" width="{_f(pw)}" height="{row - 8}" '
                       'fill="url(#hatch)"/>'
                       f'<text class="value flag" x="{label_w + pw + 8}" y="{y0 + 17}">{escape(text)}</text>')
        else:
            w = max(1.0, pw * float(value) / high)
            out.append(f'<rect class="bar" x="{label_w}" y="{y0 + 4}" width="{_f(w)}" height="{row - 8}" '
                       f'fill="{colour}"/>'
                       f'<text class="value" x="{_f(label_w + w + 8)}" y="{y0 + 17}">{escape(text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class Point:
    x: float  # tokens (> 0)
    y: float  # successful outcomes per million tokens (>= 0)
    colour: str
    tip: str
    flag: str | None  # the label of a flagged point


def scatter(points: list[Point], x_label: str, y_label: str) -> str:
    """Log-log scatter; points with y = 0 sit on their own row under the axis, labelled "none"."""
    left, right, top, bottom, height = 64, 16, 12, 58, 440
    zero_row = 18  # the strip under the plot for points without any successful outcome
    pw, ph = WIDTH - left - right, height - top - bottom - zero_row
    xs = [math.log10(p.x) for p in points]
    ys = [math.log10(p.y) for p in points if p.y > 0]
    x_lo, x_hi = math.floor(min(xs)), math.ceil(max(xs))
    y_lo, y_hi = (math.floor(min(ys)), math.ceil(max(ys))) if ys else (0, 1)
    x_hi, y_hi = max(x_hi, x_lo + 1), max(y_hi, y_lo + 1)

    def px(v: float) -> float:
        return left + pw * (math.log10(v) - x_lo) / (x_hi - x_lo)

    def py(v: float) -> float:
        if v <= 0:
            return top + ph + zero_row
        return top + ph - ph * (math.log10(v) - y_lo) / (y_hi - y_lo)

    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="value versus volume">']
    for e in range(x_lo, x_hi + 1):
        xx = left + pw * (e - x_lo) / (x_hi - x_lo)
        out.append(f'<line class="grid" x1="{_f(xx)}" x2="{_f(xx)}" y1="{top}" y2="{top + ph + zero_row}"/>'
                   f'<text class="axis" x="{_f(xx)}" y="{top + ph + zero_row + 18}" text-anchor="middle">'
                   f"{count(10 ** e)}</text>")
    for e in range(y_lo, y_hi + 1):
        yy = top + ph - ph * (e - y_lo) / (y_hi - y_lo)
        out.append(f'<line class="grid" x1="{left}" x2="{WIDTH - right}" y1="{_f(yy)}" y2="{_f(yy)}"/>'
                   f'<text class="axis" x="{left - 6}" y="{_f(yy + 4)}" text-anchor="end">{10.0 ** e:g}</text>')
    out.append(f'<text class="axis" x="{left - 6}" y="{top + ph + zero_row + 4}" text-anchor="end">none</text>'
               f'<line class="axis-line" x1="{left}" x2="{WIDTH - right}" y1="{top + ph + zero_row / 2}" '
               f'y2="{top + ph + zero_row / 2}" stroke-dasharray="3 3"/>')
    out.append(f'<text class="axis-title" x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">'
               f"{escape(x_label)}</text>"
               f'<text class="axis-title" transform="translate(14 {top + ph / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(y_label)}</text>')
    # flagged points last, so they are drawn on top
    for p in sorted(points, key=lambda p: p.flag is not None):
        cx, cy = _f(px(p.x)), _f(py(p.y))
        if p.flag is None:
            out.append(f'<circle class="dot" cx="{cx}" cy="{cy}" r="4" fill="{p.colour}">'
                       f"<title>{escape(p.tip)}</title></circle>")
        else:
            # the label goes right of the dot, or left of it near the right edge
            left_side = px(p.x) > WIDTH - 170
            lx, anchor = (px(p.x) - 10, "end") if left_side else (px(p.x) + 10, "start")
            out.append(f'<g class="flagged"><title>{escape(p.tip)}</title>'
                       f'<circle cx="{cx}" cy="{cy}" r="7" fill="{FLAG}" stroke="#fff" stroke-width="1.5"/>'
                       f'<text class="flag-label" x="{_f(lx)}" y="{_f(py(p.y) + 4)}" text-anchor="{anchor}">'
                       f"{escape(p.flag)}</text></g>")
    out.append("</svg>")
    return "".join(out)

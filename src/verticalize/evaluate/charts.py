"""Small inline SVG charts for the report: no JavaScript, no network, readable in any browser or e-mail client.

Each function returns one ``<svg>`` element as a string; values are escaped, and missing data gives a note.
"""

from __future__ import annotations

import math
from html import escape
from typing import Mapping, Sequence

from verticalize.evaluate.metrics import percentile

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _nice_max(v: float) -> float:
    if v <= 0 or not math.isfinite(v):
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _fmt(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 10 else f"{v:,.0f}"


def _svg(width: int, height: int, body: list[str], title: str, css_class: str) -> str:
    return (f'<svg class="chart {css_class}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title>{"".join(body)}</svg>')


def _legend(names: Sequence[str], x: int, y: int) -> list[str]:
    out = []
    for i, name in enumerate(names):
        out.append(f'<rect x="{x}" y="{y + 16 * i}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                   f'<text x="{x + 15}" y="{y + 9 + 16 * i}" {_FONT}>{escape(name)}</text>')
    return out


def _y_axis(x0: int, y0: int, h: int, w: int, top: float) -> list[str]:
    out = []
    for i in range(5):
        v = top * i / 4
        y = y0 - h * i / 4
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + w}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" {_FONT}>{_fmt(v)}</text>')
    return out


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float | None]], title: str,
                 css_class: str = "bars", y_max: float | None = None) -> str:
    """One group of bars per ``groups`` entry (e.g. rungs), one bar per series (e.g. metrics)."""
    names = list(series)
    values = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    top = y_max or _nice_max(max(values, default=0.0))
    w, h, x0, y0 = 120 + 110 * max(1, len(groups)), 260, 50, 220
    plot_w, plot_h = w - x0 - 130, 190
    body = [f'<text x="{x0}" y="16" {_FONT} font-weight="bold">{escape(title)}</text>']
    body += _y_axis(x0, y0, plot_h, plot_w, top)
    slot = plot_w / max(1, len(groups))
    bar = min(28.0, (slot - 14) / max(1, len(names)))
    for gi, group in enumerate(groups):
        gx = x0 + gi * slot + (slot - bar * len(names)) / 2
        for si, name in enumerate(names):
            v = series[name][gi]
            if v is None or not math.isfinite(v):
                continue
            bh = plot_h * min(v, top) / top
            x = gx + si * bar
            body.append(f'<rect x="{x:.1f}" y="{y0 - bh:.1f}" width="{bar - 2:.1f}" height="{bh:.1f}" '
                        f'fill="{PALETTE[si % len(PALETTE)]}"><title>{escape(group)} {escape(name)}: '
                        f'{v:.4g}</title></rect>')
            body.append(f'<text x="{x + bar / 2 - 1:.1f}" y="{y0 - bh - 3:.1f}" text-anchor="middle" '
                        f'font-size="9" font-family="system-ui, sans-serif">{_fmt(v)}</text>')
        body.append(f'<text x="{x0 + gi * slot + slot / 2:.1f}" y="{y0 + 16}" text-anchor="middle" {_FONT}>'
                    f'{escape(group)}</text>')
    body += _legend(names, x0 + plot_w + 15, 30)
    return _svg(w, h, body, title, css_class)


def lines(series: Mapping[str, Sequence[tuple[float, float]]], title: str, x_label: str, y_label: str,
          css_class: str = "lines") -> str:
    """Line chart of (x, y) points per series; series whose name ends in 'validation' are dashed with dots."""
    points = [p for s in series.values() for p in s]
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_top = _nice_max(max(ys))
    w, h, x0, y0, plot_w, plot_h = 680, 280, 55, 235, 470, 200
    body = [f'<text x="{x0}" y="16" {_FONT} font-weight="bold">{escape(title)}</text>']
    body += _y_axis(x0, y0, plot_h, plot_w, y_top)
    body.append(f'<text x="{x0 + plot_w / 2}" y="{h - 8}" text-anchor="middle" {_FONT}>{escape(x_label)}</text>'
                f'<text x="12" y="{y0 - plot_h / 2}" transform="rotate(-90 12 {y0 - plot_h / 2})" '
                f'text-anchor="middle" {_FONT}>{escape(y_label)}</text>'
                f'<text x="{x0}" y="{y0 + 14}" {_FONT}>{_fmt(x_lo)}</text>'
                f'<text x="{x0 + plot_w}" y="{y0 + 14}" text-anchor="end" {_FONT}>{_fmt(x_hi)}</text>')

    def xy(p: tuple[float, float]) -> str:
        return f"{x0 + plot_w * (p[0] - x_lo) / (x_hi - x_lo):.1f},{y0 - plot_h * p[1] / y_top:.1f}"

    for i, (name, pts) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        dashed = name.endswith("validation")
        dash = 'stroke-dasharray="5 3" ' if dashed else ""
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" {dash}'
                    f'points="{" ".join(xy(p) for p in pts)}"><title>{escape(name)}</title></polyline>')
        if dashed or len(pts) == 1:
            body += [f'<circle cx="{xy(p).split(",")[0]}" cy="{xy(p).split(",")[1]}" r="3" fill="{colour}"/>'
                     for p in pts]
    body += _legend(list(series), x0 + plot_w + 12, 30)
    return _svg(w, h, body, title, css_class)


def latency_strips(latencies: Mapping[str, Sequence[float]], title: str, css_class: str = "latency") -> str:
    """Per rung: every answer's latency as a dot, with p50 / p95 / p99 ticks, on a shared millisecond axis."""
    rows = {k: [v for v in vals if v is not None] for k, vals in latencies.items()}
    rows = {k: v for k, v in rows.items() if v}
    if not rows:
        return ""
    top = _nice_max(max(max(v) for v in rows.values()))
    x0, plot_w, row_h = 80, 520, 34
    h = 50 + row_h * len(rows) + 20
    body = [f'<text x="10" y="16" {_FONT} font-weight="bold">{escape(title)}</text>']
    for i in range(5):
        x = x0 + plot_w * i / 4
        body.append(f'<line x1="{x:.1f}" y1="28" x2="{x:.1f}" y2="{h - 22}" stroke="#eee"/>'
                    f'<text x="{x:.1f}" y="{h - 8}" text-anchor="middle" {_FONT}>{_fmt(top * i / 4)} ms</text>')
    for r, (rung, vals) in enumerate(rows.items()):
        y = 45 + r * row_h
        colour = PALETTE[r % len(PALETTE)]
        body.append(f'<text x="{x0 - 8}" y="{y + 4}" text-anchor="end" {_FONT}>{escape(rung)}</text>')
        for j, v in enumerate(vals):
            jitter = ((j * 7) % 11 - 5) * 1.2  # deterministic spread so equal latencies stay visible
            body.append(f'<circle cx="{x0 + plot_w * v / top:.1f}" cy="{y + jitter:.1f}" r="2.5" fill="{colour}" '
                        f'fill-opacity="0.55"/>')
        for q, dash in ((50, ""), (95, ' stroke-dasharray="3 2"'), (99, ' stroke-dasharray="1 2"')):
            x = x0 + plot_w * percentile(vals, q) / top
            body.append(f'<line x1="{x:.1f}" y1="{y - 12}" x2="{x:.1f}" y2="{y + 12}" stroke="#222"{dash}>'
                        f'<title>{escape(rung)} p{q}: {percentile(vals, q):.1f} ms</title></line>')
    return _svg(x0 + plot_w + 40, h, body, title, css_class)


def stacked_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str,
                 css_class: str = "stacked") -> str:
    """Horizontal stacked bars: one bar per group (e.g. split), one segment per series (e.g. example kind)."""
    totals = [sum(series[s][g] for s in series) for g in range(len(groups))]
    if not groups or not any(totals):
        return ""
    top = max(totals)
    x0, plot_w, row_h = 90, 440, 30
    h = 40 + row_h * len(groups) + 16 * max(0, len(series) - len(groups))
    body = [f'<text x="10" y="16" {_FONT} font-weight="bold">{escape(title)}</text>']
    for gi, group in enumerate(groups):
        y, x = 30 + gi * row_h, float(x0)
        body.append(f'<text x="{x0 - 8}" y="{y + 14}" text-anchor="end" {_FONT}>{escape(group)}</text>')
        for si, name in enumerate(series):
            v = series[name][gi]
            if v <= 0:
                continue
            bw = plot_w * v / top
            body.append(f'<rect x="{x:.1f}" y="{y}" width="{bw:.1f}" height="20" fill="{PALETTE[si % len(PALETTE)]}">'
                        f'<title>{escape(group)} {escape(name)}: {v:g}</title></rect>')
            if bw > 24:
                body.append(f'<text x="{x + bw / 2:.1f}" y="{y + 14}" text-anchor="middle" fill="#fff" {_FONT}>'
                            f'{v:g}</text>')
            x += bw
        body.append(f'<text x="{x + 6:.1f}" y="{y + 14}" {_FONT}>{totals[gi]:g}</text>')
    body += _legend(list(series), x0 + plot_w + 50, 30)
    return _svg(x0 + plot_w + 170, max(h, 40 + 16 * len(series)), body, title, css_class)

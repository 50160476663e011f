"""Tiny server-side SVG charts (bars and lines) for the reports: no JavaScript, no CDN.

Each chart is an <svg role="img"> with a <title> and a <desc>, and every bar or point has
a <title> tooltip; the page shows the same figures as a table for screen readers and copying.
All text is escaped, so labels from the database are safe.
"""
import math

from markupsafe import Markup, escape

PALETTE = ("#2f6db5", "#d9822b", "#3a9d5d", "#b83b3b", "#7a5cb8", "#6b7280")
FONT = 'font-family="system-ui, sans-serif" font-size="11"'
_counter = iter(range(1, 10 ** 9))


def nice_scale(top, ticks=5):
    """(axis maximum, step) with a 1-2-5 step and the maximum a multiple of it."""
    if top is None or top <= 0:
        return 1, 1
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if step < 1 and float(top).is_integer():
        step = 1
    return step * math.ceil(top / step), step


def _number(value):
    if value is None:
        return "–"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _frame(width, height, title, desc, body, legend):
    ident = f"chart-{next(_counter)}"
    return Markup(
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" role="img" aria-labelledby="{ident}-t {ident}-d">'
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(desc)}</desc>'
        f'{body}{legend}</svg>')


def _axes(left, top, plot_w, plot_h, axis_max, step, unit):
    parts = []
    value = 0
    while value <= axis_max + 1e-9:
        y = top + plot_h - plot_h * value / axis_max
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#4b5563" {FONT}>'
                     f'{escape(_number(value))}{escape(unit)}</text>')
        value += step
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#9ca3af"/>')
    return "".join(parts)


def _legend(series, left, y):
    if len(series) < 2:
        return ""
    parts, x = [], left
    for index, (name, _values) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="{y}" fill="#111827" {FONT}>{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return "".join(parts)


def _short(label, limit=16):
    label = str(label)
    return label if len(label) <= limit else label[:limit - 1] + "…"


def bar_chart(categories, series, *, title, unit="", width=640, height=260, max_value=None):
    """Grouped bars: `series` is [(name, [value per category])]; None draws no bar."""
    left, top, right, bottom = 48, 24, 12, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    axis_max, step = nice_scale(max_value if max_value is not None else max(values, default=0))
    body = [_axes(left, top, plot_w, plot_h, axis_max, step, unit)]
    count = max(len(categories), 1)
    slot = plot_w / count
    bar_w = max(2.0, slot * 0.8 / max(len(series), 1))
    for c, category in enumerate(categories):
        for s, (name, vs) in enumerate(series):
            value = vs[c]
            if value is None:
                continue
            h = plot_h * min(value, axis_max) / axis_max
            x = left + c * slot + slot * 0.1 + s * bar_w
            body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                        f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(category)}, {escape(name)}: '
                        f'{escape(_number(value))}{escape(unit)}</title></rect>')
        body.append(f'<text x="{left + c * slot + slot / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                    f'fill="#374151" {FONT}>{escape(_short(category, max(4, int(slot / 7))))}</text>')
    desc = "; ".join(f"{name}: " + ", ".join(f"{cat} {_number(v)}{unit}" for cat, v in zip(categories, vs))
                     for name, vs in series)
    return _frame(width, height, title, desc, "".join(body), _legend(series, left, height - 8))


def line_chart(labels, series, *, title, unit="", width=640, height=260, label_every=None):
    """Lines over evenly spaced labels (days): `series` is [(name, [value per label])]."""
    left, top, right, bottom = 48, 24, 12, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    axis_max, step = nice_scale(max(values, default=0))
    body = [_axes(left, top, plot_w, plot_h, axis_max, step, unit)]
    n = len(labels)
    dx = plot_w / (n - 1) if n > 1 else 0

    def x_of(i):
        return left + i * dx if n > 1 else left + plot_w / 2

    every = label_every or max(1, math.ceil(n / 8))
    for i, label in enumerate(labels):
        if i % every == 0 or i == n - 1 and n <= 8:
            body.append(f'<text x="{x_of(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="#374151" '
                        f'{FONT}>{escape(label)}</text>')
    for s, (name, vs) in enumerate(series):
        colour = PALETTE[s % len(PALETTE)]
        points = [(x_of(i), top + plot_h - plot_h * min(v, axis_max) / axis_max) for i, v in enumerate(vs)
                  if v is not None]
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        if n <= 62:
            for i, v in enumerate(vs):
                if v is None:
                    continue
                y = top + plot_h - plot_h * min(v, axis_max) / axis_max
                body.append(f'<circle cx="{x_of(i):.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"><title>'
                            f'{escape(labels[i])}, {escape(name)}: {escape(_number(v))}{escape(unit)}</title></circle>')
    totals = ", ".join(f"{name} {_number(sum(v for v in vs if v is not None))}{unit} in all" for name, vs in series)
    desc = f"{n} points from {labels[0]} to {labels[-1]}: {totals}" if n else "no data"
    return _frame(width, height, title, desc, "".join(body), _legend(series, left, height - 8))

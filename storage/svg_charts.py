"""Small inline SVG charts for the HTML report and the review queue's pages: no script, no
external resource, every text escaped. Pure functions from numbers and labels to an ``<svg>``
element as a string."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 720, 220
LEFT, BOTTOM, TOP = 48, 36, 10


def bar_chart(values: Sequence[int], labels: Sequence[str], *, title: str, color: str) -> str:
    """Vertical bars, one per value, a tooltip on each (``label: value``)."""
    if len(values) != len(labels):
        raise ValueError(f"bar_chart {title!r}: {len(values)} values but {len(labels)} labels")
    top = max(values, default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(values), 1)
    parts = [_open(title), _axis(top, plot_h)]
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        h = plot_h * value / top
        x = LEFT + i * step
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="{_text(color)}">'
            f"<title>{_text(label)}: {value}</title></rect>"
        )
    every = max(1, len(labels) // 10)
    for i in range(0, len(labels), every):
        parts.append(
            f'<text x="{LEFT + (i + 0.5) * step:.1f}" y="{HEIGHT - BOTTOM + 14}" font-size="10" '
            f'text-anchor="middle">{_text(labels[i])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def stacked_shares(
    columns: Sequence[str],
    series: dict[str, Sequence[int]],
    colors: dict[str, str],
    *,
    title: str,
) -> str:
    """One column per entry of ``columns``, stacked by series as shares of the column's total
    (a tooltip gives the column, the series, its count and share)."""
    for name, counts in series.items():
        if len(counts) != len(columns):
            raise ValueError(
                f"stacked_shares {title!r}: series {name!r} has {len(counts)} values, "
                f"expected one per column ({len(columns)})"
            )
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(columns), 1)
    parts = [_open(title), _axis(1.0, plot_h, percent=True)]
    for i, column in enumerate(columns):
        total = sum(counts[i] for counts in series.values())
        y = TOP + plot_h
        for name, counts in series.items():
            if total == 0 or counts[i] == 0:
                continue
            share = counts[i] / total
            h = plot_h * share
            y -= h
            parts.append(
                f'<rect x="{LEFT + i * step:.1f}" y="{y:.1f}" width="{max(step - 0.5, 0.5):.1f}" '
                f'height="{h:.1f}" fill="{_text(colors.get(name, "#888"))}"><title>'
                f"{_text(column)} {_text(name)}: {counts[i]} ({share:.1%})</title></rect>"
            )
    every = max(1, len(columns) // 8)
    for i in range(0, len(columns), every):
        parts.append(
            f'<text x="{LEFT + i * step:.1f}" y="{HEIGHT - BOTTOM + 14}" font-size="10">'
            f"{_text(columns[i])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


MARKED_POINTS = 120  # columns up to which every point gets a marker with a tooltip


def line_chart(
    columns: Sequence[str],
    series: dict[str, Sequence[float]],
    colors: Sequence[str],
    *,
    title: str,
) -> str:
    """One line per series over ``columns`` (a legend names them; a tooltip on each point, up to
    :data:`MARKED_POINTS` columns, gives the column, the series and its value). Colors are used
    in turn."""
    if not colors:
        raise ValueError(f"line_chart {title!r}: no colors given")
    for name, values in series.items():
        if len(values) != len(columns):
            raise ValueError(
                f"line_chart {title!r}: series {name[:40]!r} has {len(values)} values, "
                f"expected one per column ({len(columns)})"
            )
    top = max((v for values in series.values() for v in values), default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(columns) - 1, 1)
    parts = [_open(title), _axis(top, plot_h)]
    for n, (name, values) in enumerate(series.items()):
        color = _text(colors[n % len(colors)])
        points = [
            (LEFT + i * step, TOP + plot_h * (1 - max(value, 0) / top))
            for i, value in enumerate(values)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5">'
            f"<title>{_text(name)}</title></polyline>"
        )
        if len(columns) <= MARKED_POINTS:
            for (x, y), column, value in zip(points, columns, values, strict=True):
                parts.append(
                    f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"><title>'
                    f"{_text(column)} {_text(name)}: {value:,.4g}</title></circle>"
                )
        parts.append(
            f'<text x="{LEFT + 8 + n * 150}" y="{HEIGHT - 6}" font-size="10" fill="{color}">'
            f"{_text(name[:24])}</text>"
        )
    every = max(1, -(-len(columns) // 6))  # at most 6 labels, about 100 px apart
    for i in range(0, len(columns), every):
        anchor = "start" if i == 0 else "end" if i == len(columns) - 1 else "middle"
        parts.append(
            f'<text x="{LEFT + i * step:.1f}" y="{HEIGHT - BOTTOM + 14}" font-size="10" '
            f'text-anchor="{anchor}">{_text(columns[i])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _text(text: str) -> str:
    """``text`` escaped for XML, its control characters (which XML cannot hold) as ``?``."""
    return escape("".join(c if c.isprintable() else "?" for c in text))


def _open(title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}"><title>{_text(title)}</title>'
    )


def _axis(top: float, plot_h: float, *, percent: bool = False) -> str:
    parts = [
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#444"/>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 8}" y2="{TOP + plot_h}" '
        'stroke="#444"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        value = top * fraction
        label = f"{value:.0%}" if percent else f"{value:,.0f}" if top >= 10 else f"{value:g}"
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{label}</text>'
        )
    return "".join(parts)

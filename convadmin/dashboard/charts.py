"""Charts as SVG built on the server: no script, no style attribute (CSP), colours from CSS classes in
convadmin.css. Every text that goes in (labels, error messages) is escaped by ``format_html``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from convadmin.lists.filters import escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 28


@dataclass
class Segment:
    css: str  # e.g. "created": the class ``seg-created`` colours it
    name: str
    value: int
    href: str = ""


@dataclass
class Column:
    label: str  # full, for the tooltip
    tick: str  # short, under the axis (may be "")
    segments: Sequence[Segment]

    @property
    def total(self) -> int:
        return sum(s.value for s in self.segments)


def _e(text: str) -> str:
    return escape(str(text))  # html.escape, quotes too; the common case (nothing to escape) without a replace


def _n(value: float) -> str:
    return f"{value:.1f}"


def _nice(top: float) -> int:
    """A round axis maximum at or above ``top``."""
    if top <= 0:
        return 1
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000):
        if top <= step * 4:
            return step * 4 if top > step * 2 else step * 2 if top > step else step
    magnitude = 10 ** (len(str(int(top))) - 1)
    return int(-(-top // magnitude) * magnitude)


def _frame(title: str, body: SafeString, top_value: str, chart_id: str) -> SafeString:
    return format_html(
        '<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="{id}-title" '
        'preserveAspectRatio="xMidYMid meet" id="{id}"><title id="{id}-title">{title}</title>'
        '<line class="axis" x1="{l}" y1="{b}" x2="{r}" y2="{b}"/>'
        '<line class="grid" x1="{l}" y1="{t}" x2="{r}" y2="{t}"/>'
        '<text class="tick" x="{tx}" y="{ty}" text-anchor="end">{top}</text>'
        '<text class="tick" x="{tx}" y="{b}" text-anchor="end">0</text>{body}</svg>',
        w=WIDTH,
        h=HEIGHT,
        id=chart_id,
        title=title,
        l=LEFT,
        r=WIDTH - RIGHT,
        b=HEIGHT - BOTTOM,
        t=TOP,
        tx=LEFT - 4,
        ty=TOP + 4,
        top=top_value,
        body=body,
    )


def stacked_bars(title: str, columns: Sequence[Column], *, chart_id: str) -> SafeString:
    """One bar per column, its segments stacked bottom up; each segment links to its records."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice(max((c.total for c in columns), default=0))
    slot = plot_w / max(len(columns), 1)
    bar = max(slot * 0.7, 1)
    parts = []
    for i, column in enumerate(columns):
        x = LEFT + i * slot + (slot - bar) / 2
        y = HEIGHT - BOTTOM
        label = _e(column.label)
        for segment in column.segments:
            if not segment.value:
                continue
            h = segment.value / top * plot_h
            y -= h
            # f-strings and html.escape rather than format_html: a 90-day chart has over a thousand of these
            rect = (
                f'<rect class="seg-{_e(segment.css)}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{max(h, 0.5):.1f}"><title>{label} · {_e(segment.name)}: {int(segment.value)}</title></rect>'
            )
            parts.append(f'<a href="{_e(segment.href)}">{rect}</a>' if segment.href else rect)
        if column.tick:
            parts.append(
                f'<text class="tick" x="{x + bar / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle">{_e(column.tick)}</text>'
            )
    return _frame(title, mark_safe("".join(parts)), str(top), chart_id)  # noqa: S308 (parts are escaped)


def lines(
    title: str,
    ticks: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[int | None]]],
    *,
    chart_id: str,
    unit: str = "ms",
) -> SafeString:
    """One polyline per ``(css, name, values)``; a missing value breaks the line (a dot marks a lone point)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [v for _, _, vs in series for v in vs if v is not None]
    top = _nice(max(values, default=0))
    n = max(len(ticks), 1)
    step = plot_w / max(n - 1, 1)

    def point(i: int, v: int) -> tuple[float, float]:
        return LEFT + i * step, HEIGHT - BOTTOM - min(v, top) / top * plot_h

    parts = []
    for css, name, vs in series:
        run: list[tuple[float, float]] = []
        for i, v in enumerate([*vs, None]):
            if v is not None:
                run.append(point(i, v))
                continue
            if len(run) > 1:
                parts.append(
                    format_html(
                        '<polyline class="line-{}" points="{}"><title>{}</title></polyline>',
                        css,
                        " ".join(f"{x:.1f},{y:.1f}" for x, y in run),
                        name,
                    )
                )
            for x, y in run:
                parts.append(
                    format_html('<circle class="dot-{}" cx="{}" cy="{}" r="2.5"/>', css, _n(x), _n(y))
                )
            run = []
    every = max(1, -(-n // 8))
    parts.append(
        format_html_join(
            "",
            '<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>',
            (
                (_n(LEFT + i * step), HEIGHT - BOTTOM + 16, tick)
                for i, tick in enumerate(ticks)
                if i % every == 0
            ),
        )
    )
    return _frame(title, mark_safe("".join(parts)), f"{top} {unit}", chart_id)  # noqa: S308


def meter(fraction: float | None, label: str) -> SafeString:
    """A small horizontal bar for a rate (its number is printed next to it)."""
    width = 0 if fraction is None else max(fraction * 100, 0.5 if fraction else 0)
    return format_html(
        '<svg class="meter" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true">'
        '<rect class="meter-track" x="0" y="0" width="100" height="8"/>'
        '<rect class="seg-failed" x="0" y="0" width="{}" height="8"><title>{}</title></rect></svg>',
        _n(width),
        label,
    )


def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> SafeString:
    """A chart's text alternative: the first cell of a row is its header. Built here rather than in the
    template: a 90-day chart has 90 rows, and four of them cost more in template tags than the figures."""
    th = "".join(f'<th scope="col">{_e(h)}</th>' for h in head)
    body = "".join(
        f'<tr><th scope="row">{_e(first)}</th>{"".join(f"<td>{_e(cell)}</td>" for cell in rest)}</tr>'
        for first, *rest in rows
    )
    return mark_safe(f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>")  # noqa: S308

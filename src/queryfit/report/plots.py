"""Small hand-built SVG charts for the HTML report: line charts, bar charts, interval plots.

Each function returns one ``<svg>`` element as a string, sized by its ``viewBox`` so it scales with
the page, with a ``<title>`` and ``<desc>`` for screen readers and a ``<title>`` tooltip on every
data point. No JavaScript and no plotting library: the report stays one small file that opens
offline and renders the same in any browser.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

# Colours chosen to stay distinct for the common colour-vision deficiencies (Okabe-Ito based).
BASE_COLOR = "#7a7f87"
ADAPTED_COLOR = "#0b6bcb"
GAIN_COLOR = "#1a8f4c"
LOSS_COLOR = "#c8382c"
NEUTRAL_COLOR = "#9aa3ad"
ACCENT_COLOR = "#d97706"

_FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"
_MARGIN = {"left": 58, "right": 16, "top": 34, "bottom": 46}


@dataclass
class Series:
    """One line: ``y[i]`` at ``x[i]``; ``None`` values leave a gap."""

    name: str
    x: Sequence[float]
    y: Sequence[float | None]
    color: str
    dashed: bool = False
    markers: bool = False
    # Format for the tooltip value of each point, e.g. "{:.3f}".
    fmt: str = "{:.4g}"


def _num(value: float) -> str:
    """Compact coordinate text (SVG does not need more than 0.01 px)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round ticks covering ``[low, high]`` (steps of 1, 2, 2.5 or 5 x 10^n)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9)
    ticks: list[float] = []
    for i in range(first, first + 60):  # multiples of step: no drift from repeated addition
        ticks.append(round(i * step, 12))
        if i * step >= high - 1e-9 * step:
            break
    return ticks


def _log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    decade = 10 ** math.floor(math.log10(max(low, 1e-12)))
    while decade <= high * 1.0001:
        for m in (1, 2, 5):
            if low * 0.9999 <= m * decade <= high * 1.0001:
                ticks.append(m * decade)
        decade *= 10
    return ticks


def _tick_label(value: float, step: float) -> str:
    if abs(value) >= 1000 and float(value).is_integer():
        return f"{int(value):,}"
    decimals = max(0, -math.floor(math.log10(step)) if step > 0 else 0)
    if step > 0 and not math.isclose(round(step, decimals), step, rel_tol=1e-9):
        decimals += 1
    return f"{value:.{decimals}f}"


class _Frame:
    """Maps data coordinates to the plotting area of a ``width x height`` chart."""

    def __init__(
        self,
        width: int,
        height: int,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        x_log: bool = False,
    ) -> None:
        self.width, self.height = width, height
        self.left, self.top = _MARGIN["left"], _MARGIN["top"]
        self.right = width - _MARGIN["right"]
        self.bottom = height - _MARGIN["bottom"]
        self.x_log = x_log
        x0, x1 = x_range
        if x_log:
            x0, x1 = math.log10(max(x0, 1e-12)), math.log10(max(x1, 1e-12))
        self.x0, self.x1 = x0, x1 if x1 != x0 else x0 + 1
        self.y0, self.y1 = y_range if y_range[1] != y_range[0] else (y_range[0], y_range[0] + 1)

    def x(self, value: float) -> float:
        v = math.log10(max(value, 1e-12)) if self.x_log else value
        return self.left + (v - self.x0) / (self.x1 - self.x0) * (self.right - self.left)

    def y(self, value: float) -> float:
        return self.bottom - (value - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top)


def _open(kind: str, name: str, title: str, desc: str, width: int, height: int) -> list[str]:
    return [
        f'<svg class="plot" data-plot="{escape(name)}" data-kind="{kind}" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet" '
        f'xmlns="http://www.w3.org/2000/svg" style="{_FONT};font-size:12px">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(desc)}</desc>",
        f'<text x="{_MARGIN["left"]}" y="20" font-size="14" font-weight="600" '
        f'fill="#1f2328">{escape(title)}</text>',
    ]


def _axes(
    frame: _Frame,
    x_ticks: Sequence[float],
    y_ticks: Sequence[float],
    x_label: str,
    y_label: str,
    x_fmt: Sequence[str] | None = None,
) -> list[str]:
    out = ['<g class="axes" stroke="#d0d7de" stroke-width="1">']
    y_step = (y_ticks[1] - y_ticks[0]) if len(y_ticks) > 1 else 1.0
    for t in y_ticks:
        y = frame.y(t)
        out.append(f'<line x1="{frame.left}" x2="{frame.right}" y1="{_num(y)}" y2="{_num(y)}"/>')
    for t in x_ticks:
        x = frame.x(t)
        out.append(
            f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{frame.bottom}" y2="{frame.bottom + 4}"/>'
        )
    out.append(
        f'<line x1="{frame.left}" x2="{frame.right}" y1="{frame.bottom}" y2="{frame.bottom}" '
        'stroke="#8c959f"/>'
    )
    out.append("</g>")
    out.append('<g class="tick-labels" fill="#57606a" font-size="11">')
    for t in y_ticks:
        out.append(
            f'<text x="{frame.left - 6}" y="{_num(frame.y(t) + 4)}" text-anchor="end">'
            f"{_tick_label(t, y_step)}</text>"
        )
    x_step = (x_ticks[1] - x_ticks[0]) if len(x_ticks) > 1 else 1.0
    for i, t in enumerate(x_ticks):
        label = x_fmt[i] if x_fmt else (f"{t:g}" if frame.x_log else _tick_label(t, x_step))
        out.append(
            f'<text x="{_num(frame.x(t))}" y="{frame.bottom + 17}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    out.append("</g>")
    mid_x = (frame.left + frame.right) / 2
    mid_y = (frame.top + frame.bottom) / 2
    out.append(
        f'<text x="{_num(mid_x)}" y="{frame.height - 8}" text-anchor="middle" fill="#1f2328">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text transform="translate(14 {_num(mid_y)}) rotate(-90)" text-anchor="middle" '
        f'fill="#1f2328">{escape(y_label)}</text>'
    )
    return out


def _legend(items: Sequence[tuple[str, str, bool]], frame: _Frame) -> list[str]:
    out = ['<g class="legend" font-size="12" fill="#1f2328">']
    x = frame.right
    # Right-aligned, laid out from the right edge leftwards.
    for name, color, dashed in reversed(items):
        width = 36 + 7 * len(name)
        x -= width
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(
            f'<line x1="{_num(x)}" x2="{_num(x + 18)}" y1="16" y2="16" stroke="{color}" '
            f'stroke-width="2.5"{dash}/>'
            f'<text x="{_num(x + 22)}" y="20">{escape(name)}</text>'
        )
    out.append("</g>")
    return out


def line_chart(
    name: str,
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    desc: str = "",
    x_log: bool = False,
    y_range: tuple[float, float] | None = None,
    marks: Sequence[tuple[float, str]] = (),
    width: int = 560,
    height: int = 300,
) -> str:
    """A line chart; ``marks`` draws labelled vertical guides at the given x values."""
    points = [(x, y) for s in series for x, y in zip(s.x, s.y, strict=True) if y is not None]
    points = points or [(0.0, 0.0), (1.0, 1.0)]
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    if x_log:
        x_ticks = _log_ticks(min(xs), max(xs))
        x_range = (min(xs), max(xs))
    else:
        x_ticks = nice_ticks(min(xs), max(xs), 6)
        x_range = (min(x_ticks[0], min(xs)), max(x_ticks[-1], max(xs)))
    if y_range is None:
        y_ticks = nice_ticks(min(ys), max(ys), 5)
        y_range = (y_ticks[0], y_ticks[-1])
    else:
        y_ticks = [
            t for t in nice_ticks(*y_range, 5) if y_range[0] - 1e-9 <= t <= y_range[1] + 1e-9
        ]
    frame = _Frame(width, height, x_range, y_range, x_log=x_log)
    out = _open("line", name, title, desc or title, width, height)
    out += _axes(frame, x_ticks, y_ticks, x_label, y_label)
    for x_value, label in marks:
        x = _num(frame.x(x_value))
        out.append(
            f'<g class="mark"><line x1="{x}" x2="{x}" y1="{frame.top}" y2="{frame.bottom}" '
            f'stroke="{ACCENT_COLOR}" stroke-dasharray="3 3"/>'
            f'<text x="{x}" y="{frame.top - 3}" text-anchor="middle" font-size="10" '
            f'fill="{ACCENT_COLOR}">{escape(label)}</text></g>'
        )
    for s in series:
        segments: list[list[tuple[float, float]]] = [[]]
        for x, y in zip(s.x, s.y, strict=True):
            if y is None or not math.isfinite(y):
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append((frame.x(x), frame.y(y)))
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        out.append(f'<g class="series" data-series="{escape(s.name)}">')
        for seg in segments:
            if len(seg) == 1:
                cx, cy = _num(seg[0][0]), _num(seg[0][1])
                out.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{s.color}"/>')
            elif seg:
                d = "M" + " L".join(f"{_num(px)} {_num(py)}" for px, py in seg)
                out.append(
                    f'<path d="{d}" fill="none" stroke="{s.color}" stroke-width="2.2" '
                    f'stroke-linejoin="round"{dash}><title>{escape(s.name)}</title></path>'
                )
        for x, y in zip(s.x, s.y, strict=True):
            if y is None or not math.isfinite(y):
                continue
            radius = 3 if s.markers else 6
            fill = s.color if s.markers else "transparent"
            out.append(
                f'<circle class="point" cx="{_num(frame.x(x))}" cy="{_num(frame.y(y))}" '
                f'r="{radius}" fill="{fill}"><title>{escape(s.name)} at {x:g}: '
                f"{escape(s.fmt.format(y))}</title></circle>"
            )
        out.append("</g>")
    out += _legend([(s.name, s.color, s.dashed) for s in series], frame)
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(
    name: str,
    labels: Sequence[str],
    values: Sequence[float],
    colors: Sequence[str],
    *,
    title: str,
    x_label: str,
    y_label: str,
    desc: str = "",
    width: int = 560,
    height: int = 300,
) -> str:
    """Vertical bars, one per label, with the value printed above each bar."""
    top = max([*values, 0]) or 1
    y_ticks = nice_ticks(0, top, 5)
    frame = _Frame(width, height, (0, len(labels)), (0, y_ticks[-1]))
    out = _open("bar", name, title, desc or title, width, height)
    out += _axes(frame, [], y_ticks, x_label, y_label)
    slot = (frame.right - frame.left) / max(len(labels), 1)
    out.append('<g class="bars">')
    for i, (label, value, color) in enumerate(zip(labels, values, colors, strict=True)):
        x = frame.left + i * slot + slot * 0.12
        w = slot * 0.76
        y = frame.y(value)
        h = frame.bottom - y
        out.append(
            f'<rect class="bar" data-label="{escape(label)}" data-value="{value:g}" '
            f'x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(max(h, 0))}" '
            f'fill="{color}"><title>{escape(label)}: {value:g}</title></rect>'
            f'<text x="{_num(x + w / 2)}" y="{_num(y - 4)}" text-anchor="middle" '
            f'font-size="11" fill="#1f2328">{value:g}</text>'
            f'<text x="{_num(x + w / 2)}" y="{frame.bottom + 14}" text-anchor="middle" '
            f'font-size="10.5" fill="#57606a">{_label_lines(label, x + w / 2)}</text>'
        )
    out.append("</g></svg>")
    return "\n".join(out)


def _label_lines(label: str, x: float) -> str:
    """A category label on up to two lines: split at the first space."""
    first, _, rest = label.partition(" ")
    if not rest:
        return escape(label)
    return f'{escape(first)}<tspan x="{_num(x)}" dy="12">{escape(rest)}</tspan>'


def interval_chart(
    name: str,
    rows: Sequence[tuple[str, float, float, float]],
    *,
    title: str,
    x_label: str,
    desc: str = "",
    width: int = 460,
) -> str:
    """A forest plot: per row a point estimate with its interval, against a zero line.

    ``rows`` are ``(label, estimate, low, high)``; colour says whether the interval lies above
    zero (gain), below it (loss) or straddles it.
    """
    row_h = 28
    height = _MARGIN["top"] + _MARGIN["bottom"] + row_h * max(len(rows), 1)
    values = [v for _, e, lo, hi in rows for v in (e, lo, hi)] + [0.0]
    span = max(abs(min(values)), abs(max(values))) or 1.0
    ticks = nice_ticks(min(min(values), -0.1 * span), max(max(values), 0.1 * span), 6)
    frame = _Frame(width, height, (ticks[0], ticks[-1]), (0, len(rows) or 1))
    frame.left = 110
    out = _open("interval", name, title, desc or title, width, height)
    out.append('<g class="axes" stroke="#d0d7de">')
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    for t in ticks:
        x = _num(frame.x(t))
        stroke = ' stroke="#57606a"' if t == 0 else ""
        out.append(f'<line x1="{x}" x2="{x}" y1="{frame.top}" y2="{frame.bottom}"{stroke}/>')
    out.append("</g>")
    out.append('<g class="tick-labels" fill="#57606a" font-size="11">')
    for t in ticks:
        out.append(
            f'<text x="{_num(frame.x(t))}" y="{frame.bottom + 16}" text-anchor="middle">'
            f"{_tick_label(t, step)}</text>"
        )
    out.append("</g>")
    out.append(
        f'<text x="{_num((frame.left + frame.right) / 2)}" y="{height - 8}" '
        f'text-anchor="middle" fill="#1f2328">{escape(x_label)}</text>'
    )
    out.append('<g class="intervals">')
    for i, (label, est, low, high) in enumerate(rows):
        y = frame.top + row_h * (i + 0.5)
        color = GAIN_COLOR if low > 0 else LOSS_COLOR if high < 0 else NEUTRAL_COLOR
        out.append(
            f'<g class="interval" data-metric="{escape(label)}">'
            f'<text x="{frame.left - 8}" y="{_num(y + 4)}" text-anchor="end" '
            f'fill="#1f2328">{escape(label)}</text>'
            f'<line x1="{_num(frame.x(low))}" x2="{_num(frame.x(high))}" y1="{_num(y)}" '
            f'y2="{_num(y)}" stroke="{color}" stroke-width="3" stroke-linecap="round"/>'
            f'<circle cx="{_num(frame.x(est))}" cy="{_num(y)}" r="5" fill="{color}">'
            f"<title>{escape(label)}: {est:+.1f} [{low:+.1f}, {high:+.1f}]</title></circle></g>"
        )
    out.append("</g></svg>")
    return "\n".join(out)

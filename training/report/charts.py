"""Inline SVG charts for the report: no scripts, no network, readable without a browser plugin.
Every text that came from data is escaped; the SVG strings are marked safe for Jinja."""

from __future__ import annotations

from markupsafe import Markup, escape

CELL_WIDTH, CELL_HEIGHT, LABEL_WIDTH, HEADER_HEIGHT = 86, 30, 78, 36
CURVE_WIDTH, CURVE_HEIGHT, MARGIN = 560, 220, 40
PALETTE = ("#2f6db5", "#c4572c", "#3b8c4a", "#8a4fb5", "#b58a2f", "#2fa3b5")


def f1_colour(f1: float | None, low: float = 0.0, high: float = 1.0) -> str:
    """Pale at F1 `low`, deepening green to F1 `high`; grey for no result."""
    if f1 is None:
        return "#e4e6ea"
    position = 1.0 if high - low < 1e-9 else (f1 - low) / (high - low)
    strength = max(0.0, min(1.0, 0.12 + 0.88 * position))
    red, green, blue = (int(255 - strength * (255 - c)) for c in (46, 139, 87))
    return f"#{red:02x}{green:02x}{blue:02x}"


def heatmap(title: str, rows: list, columns: list, cells: dict, row_label: str, column_label: str,
            scale: tuple[float, float] | None = None) -> Markup:
    """A grid of F1: rows x columns, cells[(row, column)] -> F1 or None. scale: (low, high), the
    F1 values the palest and the deepest green stand for (stated under the grid), so that a model's
    cells 0.90 and 0.95 differ visibly; F1 0 to 1 without it."""
    low, high = scale or (0.0, 1.0)
    width = max(LABEL_WIDTH + CELL_WIDTH * len(columns), 7 * len(title))  # room for the title
    height = HEADER_HEIGHT + CELL_HEIGHT * len(rows) + 18 + (16 if scale else 0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}" class="chart heatmap">',
             f'<text x="4" y="14" font-size="12" font-weight="600">{escape(title)}</text>',
             f'<text x="{LABEL_WIDTH}" y="30" font-size="11" fill="#5a6375">{escape(column_label)} →</text>']
    for j, column in enumerate(columns):
        x = LABEL_WIDTH + j * CELL_WIDTH
        parts.append(f'<text x="{x + CELL_WIDTH / 2}" y="{HEADER_HEIGHT + CELL_HEIGHT * len(rows) + 14}" '
                     f'font-size="11" text-anchor="middle">{escape(column)}</text>')
    for i, row in enumerate(rows):
        y = HEADER_HEIGHT + i * CELL_HEIGHT
        parts.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + 19}" font-size="11" text-anchor="end">'
                     f'{escape(row_label)} {escape(row)}</text>')
        for j, column in enumerate(columns):
            f1 = cells.get((row, column))
            x = LABEL_WIDTH + j * CELL_WIDTH
            label = "–" if f1 is None else f"{f1:.3f}"
            parts.append(f'<rect x="{x}" y="{y}" width="{CELL_WIDTH - 2}" height="{CELL_HEIGHT - 2}" '
                         f'fill="{f1_colour(f1, low, high)}">'
                         f'<title>{escape(row)} × {escape(column)}: {label}</title></rect>')
            parts.append(f'<text x="{x + CELL_WIDTH / 2}" y="{y + 19}" font-size="12" text-anchor="middle">'
                         f'{label}</text>')
    if scale:
        parts.append(f'<text x="4" y="{height - 4}" font-size="10" fill="#5a6375">colour: palest = F1 {low:.3f}, '
                     f'deepest = F1 {high:.3f} (this model\'s lowest and highest)</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def step_ticks(max_step: int, most: int = 6) -> list[int]:
    """0 and round steps (1, 2 or 5 times a power of ten apart) up to max_step, at most `most`."""
    spacing = 1
    while max_step / spacing > most - 1:
        for factor in (2, 2.5, 2):  # 1 -> 2 -> 5 -> 10 -> 20 ...
            spacing = int(spacing * factor)
            if max_step / spacing <= most - 1:
                break
    return list(range(0, max_step + 1, spacing))


def learning_curves(title: str, curves: dict[str, list[tuple[int, float]]]) -> Markup:
    """Validation F1 against step, one line per labelled curve."""
    points = [p for curve in curves.values() for p in curve]
    if not points:
        return Markup("")
    max_step = max(step for step, _ in points) or 1
    plot_width, plot_height = CURVE_WIDTH - 2 * MARGIN, CURVE_HEIGHT - 2 * MARGIN

    def x(step):
        return MARGIN + plot_width * step / max_step

    def y(f1):
        return MARGIN + plot_height * (1 - (f1 or 0))

    height = CURVE_HEIGHT + 18 * len(curves)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{CURVE_WIDTH}" height="{height}" '
             f'role="img" aria-label="{escape(title)}" class="chart curves">',
             f'<text x="4" y="14" font-size="12" font-weight="600">{escape(title)}</text>',
             f'<line x1="{MARGIN}" y1="{MARGIN + plot_height}" x2="{MARGIN + plot_width}" '
             f'y2="{MARGIN + plot_height}" stroke="#888"/>',
             f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{MARGIN + plot_height}" stroke="#888"/>']
    for tick in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{MARGIN - 4}" y="{y(tick) + 4}" font-size="10" text-anchor="end">{tick:.1f}</text>')
    for tick in step_ticks(max_step):
        parts.append(f'<line x1="{x(tick):.1f}" y1="{MARGIN + plot_height}" x2="{x(tick):.1f}" '
                     f'y2="{MARGIN + plot_height + 4}" stroke="#888"/>'
                     f'<text x="{x(tick):.1f}" y="{MARGIN + plot_height + 15}" font-size="10" '
                     f'text-anchor="middle">{tick:,}</text>')
    parts.append(f'<text x="{MARGIN + plot_width}" y="{MARGIN + plot_height + 27}" font-size="10" '
                 f'text-anchor="end">optimizer step</text>')
    for index, (label, curve) in enumerate(curves.items()):
        colour = PALETTE[index % len(PALETTE)]
        path = " ".join(f"{x(step):.1f},{y(f1):.1f}" for step, f1 in curve)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for step, f1 in curve:
            parts.append(f'<circle cx="{x(step):.1f}" cy="{y(f1):.1f}" r="2.5" fill="{colour}">'
                         f'<title>{escape(label)} step {step}: F1 {f1:.3f}</title></circle>')
        legend_y = CURVE_HEIGHT + 4 + 18 * index
        parts.append(f'<rect x="{MARGIN}" y="{legend_y}" width="12" height="4" fill="{colour}"/>'
                     f'<text x="{MARGIN + 18}" y="{legend_y + 6}" font-size="11">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))

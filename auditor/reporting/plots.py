"""Report figures: matplotlib charts serialised as inline SVG strings.

Figures are built with ``matplotlib.figure.Figure`` directly, never through pyplot, so no
GUI backend is ever selected and nothing global changes (the SVG canvas is chosen by
``savefig(format="svg")``, the same non-interactive path the Agg backend uses).

The SVG is made to embed safely in one HTML page and in WeasyPrint's PDF:

* text stays text (``svg.fonttype = none``): small, searchable, extractable from the PDF;
* math parsing is off, so a class name with ``$`` in it cannot break rendering;
* element ids are prefixed per figure so two figures on one page never share an id;
* the hash salt and date are fixed, so the same numbers give byte-identical SVG;
* the XML prolog and the RDF metadata (which names external URIs) are dropped.

Colours are the Okabe-Ito palette (Okabe & Ito 2008), distinguishable with the common
colour-vision deficiencies; lines also differ by marker so the charts survive greyscale.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Sequence

from markupsafe import escape

OKABE_ITO: tuple[str, ...] = (
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#F0E442",  # yellow: last, it is faint on white
)
WORST_CASE_COLOUR = "#000000"
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X")

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "medaudit",
    "text.parse_math": False,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
}


@dataclass
class Curve:
    """One line of an accuracy-vs-eps chart. Values are fractions in [0, 1]; ``ci95``
    holds (low, high) per point or None where no interval is known."""

    label: str
    eps_255: list[float]
    values: list[float | None]
    ci95: list[tuple[float, float] | None] = field(default_factory=list)
    emphasis: bool = False  # the worst case: drawn thicker, in black, on top


@dataclass
class BarGroup:
    """One series of a grouped bar chart (e.g. "clean" or "2/255"), one value per class."""

    label: str
    values: list[float | None]
    ci95: list[tuple[float, float] | None] = field(default_factory=list)


def _svg_string(fig: object, alt: str, id_prefix: str, **savefig: object) -> str:
    """SVG text safe to inline in one HTML page next to other figures: no XML prolog or
    RDF metadata, ids prefixed per figure, an accessible name and the report's ``chart``
    class. ``savefig``: extra ``Figure.savefig`` arguments (e.g. a tight bounding box)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, **savefig)  # type: ignore[attr-defined]
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    # Prefix every id and every reference to it (href="#x", url(#x)).
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{id_prefix}-{m.group(1)}"', svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{id_prefix}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{id_prefix}-{m.group(1)})", svg)
    # Accessible name on the root element; matplotlib escapes the text inside the SVG itself.
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{escape(alt)}" class="chart" ', 1)
    return svg.strip()


def _pct(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else 100.0 * v for v in values]


def _yerr(values: Sequence[float | None], ci95: Sequence[tuple[float, float] | None]) -> list[list[float]] | None:
    if not ci95 or all(c is None for c in ci95):
        return None
    low, high = [], []
    for v, c in zip(values, ci95):
        if v is None or c is None or c[0] is None or c[1] is None:
            low.append(0.0)
            high.append(0.0)
        else:
            low.append(max(0.0, 100.0 * (v - c[0])))
            high.append(max(0.0, 100.0 * (c[1] - v)))
    return [low, high]


def accuracy_curves(curves: Sequence[Curve], *, alt: str, id_prefix: str = "fig-acc",
                    ylabel: str = "Accuracy (%)", xlabel: str = "L-inf budget eps (/255)") -> str:
    """Accuracy (%) against eps (/255), one line per curve with 95% CI error bars."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        colour = 0
        offsets = _dodge(len(curves), curves)
        for i, curve in enumerate(curves):
            if curve.emphasis:
                style = {"color": WORST_CASE_COLOUR, "linewidth": 2.4, "marker": "o", "zorder": 5}
            else:
                style = {"color": OKABE_ITO[colour % len(OKABE_ITO)], "linewidth": 1.3,
                         "marker": MARKERS[colour % len(MARKERS)], "markersize": 4, "zorder": 3}
                colour += 1
            # A small horizontal dodge keeps overlapping error bars readable.
            xs = [x + offsets[i] for x in curve.eps_255]
            ax.errorbar(xs, _pct(curve.values), yerr=_yerr(curve.values, curve.ci95), label=curve.label,
                        capsize=2.5, elinewidth=0.8, **style)
        ax.set_ylim(0, 102)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ticks = sorted({x for c in curves for x in c.eps_255})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        # Legend below the axes: attack names are long and a side legend squeezes the plot.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False, fontsize=8)
        fig.tight_layout()
        return _svg_string(fig, alt, id_prefix)


def _dodge(n: int, curves: Sequence[Curve]) -> list[float]:
    ticks = sorted({x for c in curves for x in c.eps_255})
    gaps = [b - a for a, b in zip(ticks, ticks[1:])] or [1.0]
    width = min(gaps) * 0.04
    return [(i - (n - 1) / 2) * width for i in range(n)]


def grouped_bars(categories: Sequence[str], groups: Sequence[BarGroup], *, alt: str,
                 id_prefix: str = "fig-bars", ylabel: str = "Accuracy (%)") -> str:
    """Grouped bars: one group of bars per category (class), one bar per series, CI whiskers."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        width_in = min(9.0, max(5.0, 0.9 * len(categories) * max(1, len(groups)) / 2 + 2.5))
        fig = Figure(figsize=(width_in, 3.4))
        ax = fig.add_subplot()
        n = max(1, len(groups))
        bar = 0.8 / n
        hatches = ("", "//", "..", "xx", "\\\\", "oo", "--")
        for g, group in enumerate(groups):
            xs = [c + (g - (n - 1) / 2) * bar for c in range(len(categories))]
            colour = "#999999" if g == 0 else OKABE_ITO[(g - 1) % len(OKABE_ITO)]
            ax.bar(xs, _pct(group.values), width=bar * 0.95, label=group.label, color=colour,
                   hatch=hatches[g % len(hatches)], edgecolor="white", linewidth=0.4,
                   yerr=_yerr(group.values, group.ci95), capsize=2, error_kw={"elinewidth": 0.7})
        ax.set_ylim(0, 105)
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(len(categories)), list(categories))
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        fig.tight_layout()
        return _svg_string(fig, alt, id_prefix)

"""Figures of a segmentation audit, drawn with matplotlib's Agg canvas (no pyplot state).

* :func:`overlay_png`: the image with the contours of the ground truth, the clean
  prediction and the adversarial prediction (base64 PNG). The engine stores these in
  ``results.json['gallery']`` so a report re-renders from the JSON alone.
* :func:`metric_vs_eps_svg` / :func:`segmentation_figures`: Dice (IoU, missed-lesion
  rate) against eps per attack, plus the worst case, as inline SVG computed from a
  results dict; the report context passes them to ``partials/segmentation.html.jinja``
  as ``seg_figures``.

Both are deterministic for the same input (fixed SVG hash salt, no dates in metadata).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from auditor.imagery import figure
from auditor.reporting.plots import _svg_string

LINE_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#999999", "#F0E442")
# The report's chart style (see auditor.reporting.plots): text stays text, fixed hash salt, no math parsing.
_RC = {
    "svg.fonttype": "none", "svg.hashsalt": "medaudit", "text.parse_math": False, "font.family": "DejaVu Sans",
    "font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "#dddddd", "grid.linewidth": 0.6,
}


# {structure}: what the modality's masks outline ("lesion", "vessels"; results["modality"]["structure"])
METRIC_LABELS = {"dice": "Dice", "iou": "IoU", "missed_rate": "missed-{structure} rate",
                 "sensitivity": "{structure} sensitivity"}


def _structure(results: dict[str, Any]) -> str:
    return str((results.get("modality") or {}).get("structure") or "lesion")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")




def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and np.isfinite(value) else "n/a"


def metric_vs_eps_svg(results: dict[str, Any], metric: str = "dice") -> tuple[str, str] | None:
    """(SVG, alt text): one line per attack (the clean value at eps 0) and the worst case in
    black; None when the results hold no attack entries with this metric yet."""
    import matplotlib

    label = METRIC_LABELS.get(metric, metric).format(structure=_structure(results))
    clean = (results.get("clean") or {}).get(metric)
    attacks = [a for a in results.get("attacks", []) if isinstance(a, dict) and a.get(metric) is not None]
    if not attacks:
        return None
    names = list(dict.fromkeys(a["attack"] for a in attacks))
    titles = {a["attack"]: a.get("title") or a["attack"] for a in attacks}
    worst = [(w["eps_255"], w[metric]) for w in results.get("worst_case", []) if w.get(metric) is not None]
    with matplotlib.rc_context(_RC):
        fig = figure(6.4, 4.2)
        ax = fig.add_subplot()
        for i, name in enumerate(names):
            points = sorted((a["eps_255"], a[metric]) for a in attacks if a["attack"] == name)
            if clean is not None:
                points = [(0.0, clean)] + points
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], markersize=4, linewidth=1.3,
                    color=LINE_COLOURS[i % len(LINE_COLOURS)], label=titles[name], zorder=3)
        if worst and metric != "missed_rate":
            points = ([(0.0, clean)] if clean is not None else []) + worst
            xs, ys = zip(*points)
            ax.plot(xs, ys, color="black", linewidth=2.4, marker="o", label="worst case", zorder=5)
        ticks = sorted({0.0} | {a["eps_255"] for a in attacks})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel("L-inf budget eps (/255)")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False, fontsize=8)
        worst_text = ", ".join(f"{_fmt(v)} at {e:g}/255" for e, v in worst)
        alt = (f"Line chart of {label} against the L-inf budget, one line per attack. Clean {_fmt(clean)}"
               + (f"; worst case over all attacks {worst_text}." if worst_text and metric != "missed_rate" else "."))
        # bbox "tight": the legend sits below the axes and must stay inside the picture
        return _svg_string(fig, alt, f"fig-seg-{metric.replace('_', '-')}", bbox_inches="tight",
                           pad_inches=0.05), alt


CAPTIONS = {
    "dice": "Dice against the L-inf budget (eps = 0 is the clean Dice), each attack run on every image. "
            "The black line is the worst case per image over all attacks at that or a smaller budget.",
    "iou": "IoU (mean over images; mean over foreground classes for multi-class masks) against the budget.",
    "missed_rate": "Share of the images whose ground truth shows {structure} whose predicted {structure} area "
                   "fell below the configured fraction of the true area, per attack and budget.",
}


def segmentation_figures(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The figures of a segmentation results dict, keyed ``dice``, ``iou`` and ``missed_rate``;
    each ``{"svg": Markup, "alt": str, "caption": str}``, the shape the report's ``figure``
    macro takes. Absent keys: nothing to draw yet."""
    from markupsafe import Markup

    figures = {}
    for metric in ("dice", "iou", "missed_rate"):
        drawn = metric_vs_eps_svg(results, metric)
        if drawn is not None:
            svg, alt = drawn
            caption = CAPTIONS[metric].format(structure=_structure(results))
            figures[metric] = {"svg": Markup(svg), "alt": alt, "caption": caption}
    return figures

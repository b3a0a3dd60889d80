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

import base64
import io
from typing import Any

import numpy as np

from auditor.plots import _svg_string

# Colour-blind-safe (Okabe-Ito) contour colours, also named in the report legend.
GROUND_TRUTH_COLOUR = "#F0E442"  # yellow
CLEAN_COLOUR = "#56B4E9"  # sky blue
ADVERSARIAL_COLOUR = "#D55E00"  # vermilion
ROI_COLOUR = "#FFFFFF"  # dotted
CONTOUR_LEGEND = (
    {"key": "ground_truth", "label": "ground truth", "colour": GROUND_TRUTH_COLOUR},
    {"key": "clean", "label": "clean prediction (dashed)", "colour": CLEAN_COLOUR},
    {"key": "adversarial", "label": "adversarial prediction", "colour": ADVERSARIAL_COLOUR},
    {"key": "roi", "label": "region of interest (dotted)", "colour": ROI_COLOUR},
)
LINE_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#999999", "#F0E442")
# The report's chart style (see auditor.plots): text stays text, fixed hash salt, no math parsing.
_RC = {
    "svg.fonttype": "none", "svg.hashsalt": "medaudit", "text.parse_math": False, "font.family": "DejaVu Sans",
    "font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "#dddddd", "grid.linewidth": 0.6,
}


def _figure(width_in: float, height_in: float, dpi: float = 100) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def overlay_png(image: np.ndarray, target: np.ndarray, clean_pred: np.ndarray, adv_pred: np.ndarray,
                roi: np.ndarray | None = None, min_side: int = 256, max_side: int = 512) -> str:
    """Contours of ``target`` (ground truth), ``clean_pred`` and ``adv_pred`` (foreground = any
    class > 0, (H, W)) over ``image`` ((C, H, W) in [0, 1]), as a base64 PNG whose longer side
    lies in [min_side, max_side] pixels."""
    image = np.asarray(image, dtype=np.float32)
    h, w = target.shape
    scale = min(max(min_side / max(h, w), 1.0), max_side / max(h, w))
    dpi = 100
    fig = _figure(w * scale / dpi, h * scale / dpi, dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(image[:3].transpose(1, 2, 0), 0, 1), interpolation="nearest")
    ax.grid(False)
    width = 1.6 if scale > 1 else 1.0  # points; the same on a 32 px lesion and a 576 px fundus
    if roi is not None and 0 < roi.sum() < roi.size:
        ax.contour(roi.astype(np.float32), levels=[0.5], colors=[ROI_COLOUR], linewidths=0.8, linestyles="dotted")
    # adversarial first and ground truth last, so the reference stays visible where they overlap
    for mask, colour, style in ((adv_pred, ADVERSARIAL_COLOUR, "solid"), (clean_pred, CLEAN_COLOUR, "dashed"),
                                (target, GROUND_TRUTH_COLOUR, "solid")):
        fg = (np.asarray(mask) > 0).astype(np.float32)
        if 0 < fg.sum() < fg.size:
            ax.contour(fg, levels=[0.5], colors=[colour], linewidths=width, linestyles=style)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


METRIC_LABELS = {"dice": "Dice", "iou": "IoU", "missed_rate": "missed-lesion rate", "sensitivity": "lesion sensitivity"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")




def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and np.isfinite(value) else "n/a"


def metric_vs_eps_svg(results: dict[str, Any], metric: str = "dice") -> tuple[str, str] | None:
    """(SVG, alt text): one line per attack (the clean value at eps 0) and the worst case in
    black; None when the results hold no attack entries with this metric yet."""
    import matplotlib

    label = METRIC_LABELS.get(metric, metric)
    clean = (results.get("clean") or {}).get(metric)
    attacks = [a for a in results.get("attacks", []) if isinstance(a, dict) and a.get(metric) is not None]
    if not attacks:
        return None
    names = list(dict.fromkeys(a["attack"] for a in attacks))
    titles = {a["attack"]: a.get("title") or a["attack"] for a in attacks}
    worst = [(w["eps_255"], w[metric]) for w in results.get("worst_case", []) if w.get(metric) is not None]
    with matplotlib.rc_context(_RC):
        fig = _figure(6.4, 4.2)
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
    "missed_rate": "Share of lesion-bearing images whose predicted lesion area fell below the configured "
                   "fraction of the true area, per attack and budget.",
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
            figures[metric] = {"svg": Markup(svg), "alt": alt, "caption": CAPTIONS[metric]}
    return figures

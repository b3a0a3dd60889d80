"""The report's view of results.json's ``corruption`` block (natural robustness): the family x
severity table, its heat map and accuracy-vs-severity curves, the gallery and the clinical
consequence. Numbers pass through as the engine wrote them; a non-number becomes None (shown
as n/a), image payloads that are not base64 PNG are dropped, never inlined."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from auditor.reporting import plots
from auditor.reporting.universal_view import _interval, _number, _png


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _rows(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _cell(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    clinical = _dict(entry.get("clinical"))
    return {"accuracy": _number(entry.get("accuracy")), "ci95": _interval(entry.get("ci95")),
            "sensitivity": _number(_dict(clinical.get("sensitivity")).get("value")),
            "specificity": _number(_dict(clinical.get("specificity")).get("value")),
            "overhead": _number(_dict(entry.get("overhead")).get("ratio")), "time_s": _number(entry.get("time_s"))}


def corruption_view(results: dict[str, Any]) -> dict[str, Any] | None:
    """None when the audit ran no corruption steps."""
    block = _dict(results.get("corruption"))
    steps = _rows(block.get("steps"))
    if not steps:
        return None
    severities = [s for s in block.get("severities") or [] if isinstance(s, int)]
    families = _rows(block.get("families"))
    relative = _dict(_dict(block.get("relative_error")).get("per_family"))
    table = []
    for family in families:
        name = family.get("name")
        cells = [_cell(next((e for e in steps if e.get("family") == name and e.get("severity") == s), None))
                 for s in severities]
        table.append({"name": name, "title": family.get("title") or name, "reference": family.get("reference"),
                      "library": family.get("library"), "parameter": family.get("parameter"),
                      "params": [str(_dict(_dict(family.get("params")).get(str(s))).get(family.get("parameter")))
                                 for s in severities],
                      "cells": cells, "relative_error": _number(relative.get(name))})
    worst = [{"severity": _number(w.get("severity")), **(_cell(w) or {}), "lowest_family": w.get("lowest_family")}
             for w in _rows(block.get("worst_case"))]
    consequence = _dict(block.get("consequence"))
    titles = {row["name"]: row["title"] for row in table}
    gallery = [{"title": row.get("title") or row.get("family"), "clean_png": _png(row.get("clean_png")),
                "images": [{"severity": _number(i.get("severity")), "png": _png(i.get("png"))}
                           for i in _rows(row.get("images"))]} for row in _rows(block.get("gallery"))]
    clean = _dict(results.get("clean"))
    return {
        "severities": severities, "table": table, "worst": worst, "gallery": gallery,
        "positive_class": block.get("positive_class"), "seeding": block.get("seeding"),
        "relative_error": _number(_dict(block.get("relative_error")).get("mean")),
        "relative_error_method": _dict(block.get("relative_error")).get("method"),
        "consequence": {"severity": _number(consequence.get("severity")), "family": titles.get(consequence.get("family"), consequence.get("family")),
                        "positive_class": consequence.get("positive_class"),
                        "missed": _number(consequence.get("missed")), "ci95": _interval(consequence.get("ci95")),
                        "clean_missed": _number(consequence.get("clean_missed"))} if consequence else None,
        "clean_accuracy": _number(clean.get("accuracy")),
        "heatmap": {"svg": Markup(severity_heatmap(table, severities)), "caption": (
            "Figure N1. Accuracy (%) by corruption family and severity; darker is worse.")},
        "curves": {"svg": Markup(severity_curves(table, worst, severities, _number(clean.get("accuracy")))),
                   "caption": ("Figure N2. Accuracy against corruption severity (0: clean), 95% Wilson intervals; "
                               "black: worst case per image over the families. Compare the accuracy-vs-eps curves "
                               "under Results.")},
    }


def severity_curves(table: list[dict[str, Any]], worst: list[dict[str, Any]], severities: list[int],
                    clean: float | None) -> str:
    """Accuracy against severity, one line per family, the worst case in black; severity 0
    is the clean accuracy."""
    xs = [0.0, *map(float, severities)]
    curves = [plots.Curve(row["title"], xs, [clean, *[(c or {}).get("accuracy") for c in row["cells"]]],
                          [None, *[tuple((c or {}).get("ci95") or ()) or None for c in row["cells"]]])
              for row in table]
    curves.append(plots.Curve("worst case over families", xs, [clean, *[w.get("accuracy") for w in worst]],
                              [None, *[tuple(w.get("ci95") or ()) or None for w in worst]], emphasis=True))
    return plots.accuracy_curves(curves, alt="Accuracy against corruption severity, one line per family",
                                 id_prefix="fig-corruption", xlabel="Corruption severity (0 = clean)")


def severity_heatmap(table: list[dict[str, Any]], severities: list[int]) -> str:
    """Family x severity accuracy as a heat map with the value printed in each cell."""
    import matplotlib
    from matplotlib.figure import Figure

    values = [[float("nan") if (c or {}).get("accuracy") is None else 100.0 * c["accuracy"] for c in row["cells"]]
              for row in table]
    with matplotlib.rc_context({**plots._RC, "axes.grid": False}):
        fig = Figure(figsize=(1.4 + 0.8 * len(severities), 0.9 + 0.36 * len(table)))
        ax = fig.add_subplot()
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                if v == v:  # not NaN
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if v < 60 else "black")
        ax.set_xticks(range(len(severities)), [str(s) for s in severities])
        ax.set_yticks(range(len(table)), [row["title"] for row in table])
        ax.set_xlabel("Severity")
        fig.colorbar(image, ax=ax, label="Accuracy (%)", fraction=0.05)
        fig.tight_layout()
        return plots._svg_string(fig, "Heat map of accuracy (%) by corruption family and severity",
                                 "fig-corruption-heat")

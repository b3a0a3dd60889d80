"""The view model of a report: ``results.json`` rearranged for templates, nothing new.

Templates must not compute; the engine (:func:`auditor.engine.summarise`) owns every
derived number. This module only *selects* (which entry sits in which table cell, which
attacks are black-box, which eps is the smallest), *formats* (percent, /255, [0,1] units)
and *chooses text* (which recommendation wording fits the halving eps the engine found).
Every reporter (HTML, PDF, a third-party DOCX) can share it. Optional keys are read with
``.get`` throughout: results from older or partial runs, segmentation audits and
plugin-written files must render, never crash.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from markupsafe import Markup

from auditor.metadata import metadata_rows
from auditor.reporting import plots
from auditor.reporting.corruption_view import corruption_view
from auditor.reporting.filters import css_colour, eps255, is_finite, pct, short_date
from auditor.reporting.plots_segmentation import segmentation_figures as build_segmentation_figures
from auditor.reporting.query_view import query_target_view
from auditor.reporting.universal_view import saliency_view, universal_view
from auditor.results import number_or_none

BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")

# The images results.json may carry (base64 PNG written by our own plots); the templates
# put them after a fixed "data:image/png;base64," so only the payload is checked here.
IMAGE_KEYS = ("clean_png", "adv_png", "perturbation_png", "overlay_png")


# ------------------------------------------------------------------- selection
def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    """pass / fail from the acceptance gates when the audit had any, else 'not assessed'."""
    gates = _dict(results.get("gates"))
    raw = str(gates.get("verdict") or "").lower()
    label = raw if raw in ("pass", "fail") else "not assessed"
    criteria = []
    for c in _list(gates.get("criteria") or gates.get("results")):
        if not isinstance(c, dict):
            continue
        status = c.get("status") or ({True: "pass", False: "fail"}.get(c.get("passed")) if "passed" in c else None)
        criteria.append({"name": c.get("label") or c.get("name") or c.get("criterion") or c.get("id") or "criterion",
                         "criterion": c.get("criterion"), "status": status or "n/a",
                         "message": c.get("message") or c.get("description") or ""})
    return {"label": label, "css": label.replace(" ", "-"), "criteria": criteria, "gates": gates}


def checks_view(results: dict[str, Any]) -> dict[str, Any] | None:
    """Evaluation-validity checks: None when never run; accepts the checks block
    (``{"verdict", "summary", "items", ...}``) or a bare list of check dicts."""
    raw = results.get("checks")
    if raw is None:
        return None
    if isinstance(raw, list):
        raw = {"items": raw}
    if not isinstance(raw, dict):
        return None
    items = [c for c in _list(raw.get("items")) if isinstance(c, dict)]
    return {"verdict": raw.get("verdict"), "summary": _dict(raw.get("summary")), "items": items,
            "reason": raw.get("reason"), "subsample": _dict(raw.get("subsample")),
            "references": [str(x) for x in _list(raw.get("references"))]}


def attack_table(results: dict[str, Any]) -> tuple[list[float], list[dict[str, Any]]]:
    """(eps list, rows): one row per configured attack, one cell (an ``attacks`` entry or
    None) per eps, in the order the engine ran them."""
    entries = [e for e in _list(results.get("attacks")) if isinstance(e, dict)]
    config = _dict(results.get("config"))
    eps_list = [e for e in _list(config.get("eps_255")) if is_finite(e)]
    if not eps_list:
        eps_list = sorted({e.get("eps_255") for e in entries if is_finite(e.get("eps_255"))})
    configured = [a for a in _list(config.get("attacks")) if isinstance(a, dict)]
    names = [a.get("name") for a in configured]
    names += [e.get("attack") for e in entries if e.get("attack") not in names]
    by_key = {(e.get("attack"), e.get("eps_255")): e for e in entries}
    rows = []
    for name in dict.fromkeys(names):
        meta = next((a for a in configured if a.get("name") == name), {})
        first = next((e for e in entries if e.get("attack") == name), {})
        rows.append({
            "name": name,
            "title": meta.get("title") or first.get("title") or name,
            "threat_model": meta.get("threat_model") or first.get("threat_model") or "unknown",
            "reference": meta.get("reference"),
            "params": _dict(meta.get("params")),
            "cells": [by_key.get((name, eps)) for eps in eps_list],
        })
    return eps_list, rows


def per_class_rows(results: dict[str, Any], worst: list[dict[str, Any]]) -> list[dict[str, Any]]:
    clean = _dict(_dict(results.get("clean")).get("per_class"))
    names = list(_list(_dict(results.get("model")).get("class_names"))) or list(clean)
    return [{"name": name, "clean": clean.get(name),
             "by_eps": [_dict(w.get("per_class")).get(name) for w in worst]} for name in names]


def most_effective(summary: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    raw = summary.get("most_effective_attack")
    if isinstance(raw, str):  # results written before the engine recorded its basis
        raw = {"attack": raw, "basis": None}
    if not isinstance(raw, dict) or not raw.get("attack"):
        return None
    row = next((r for r in rows if r["name"] == raw["attack"]), None)
    return {"attack": raw["attack"], "title": row["title"] if row else raw["attack"],
            "threat_model": row["threat_model"] if row else None, "basis": raw.get("basis")}


def evidence_problems(results: dict[str, Any]) -> dict[str, Any]:
    """What the cover must say before any number: validity checks that failed or warned
    (the robustness numbers are then unreliable, and the recommendation is to fix the
    evaluation), and clinical metrics left out because no class could be taken as the disease."""
    items = [c for c in _list(_dict(results.get("checks")).get("items")) if isinstance(c, dict)]
    failed = [str(c.get("name") or c.get("key")) for c in items if c.get("status") == "fail"]
    warned = [str(c.get("name") or c.get("key")) for c in items if c.get("status") == "warn"]
    clinical = _dict(results.get("clinical"))
    stopped = _dict(results.get("incomplete"))  # a stop rule (--max-time) ended the audit early
    return {"unreliable": bool(failed or warned), "failed": failed, "warned": warned,
            "needs_positive_class": bool(clinical.get("needs_positive_class")),
            "positive_note": clinical.get("note") if clinical.get("needs_positive_class") else None,
            "stopped_reason": str(stopped["reason"]) if stopped.get("reason") else None,
            "not_run": [str(s) for s in _list(stopped.get("not_run"))],
            "eps_complete": [e for e in _list(stopped.get("eps_255_complete")) if is_finite(e)]}


def recommendation_level(summary: dict[str, Any], eps_list: list[float]) -> str:
    """Which recommendation wording applies, chosen from the engine's halving eps:
    'severe' (accuracy halves at the smallest audited budget), 'significant' (at a larger
    one), 'limited' (never within the audited budgets), 'unknown' (no summary)."""
    if not summary or not eps_list:
        return "unknown"
    halving = summary.get("eps_255_halving")
    if halving is None:
        return "limited"
    return "severe" if halving <= min(eps_list) else "significant"


def threat_scope(rows: list[dict[str, Any]], results: dict[str, Any]) -> dict[str, Any]:
    models = sorted({r["threat_model"] for r in rows})
    targeted = [r["title"] for r in rows if r["params"].get("targeted")]
    if _dict(results.get("targeted")).get("per_eps"):
        targeted.append("targeted PGD in the clinical directions (disease to healthy and back)")
    counted = any(c and _dict(c.get("queries")).get("source") not in (None, "attack")
                  for r in rows for c in r["cells"])
    return {"threat_models": models, "white_box": [r for r in rows if r["threat_model"] == "white-box"],
            "black_box": [r for r in rows if r["threat_model"] == "black-box"], "targeted": targeted,
            "queries_counted": counted}


def black_box_evidence(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per black-box attack: the cell with the highest success rate (selection, not arithmetic)."""
    out = []
    for row in rows:
        if row["threat_model"] != "black-box":
            continue
        cells = [c for c in row["cells"] if c and is_finite(c.get("success_rate"))]
        best = max(cells, key=lambda c: c["success_rate"], default=None)
        if best is not None:
            out.append({"row": row, "cell": best})
    return out


def defense_recommendations(results: dict[str, Any], worst: list[dict[str, Any]],
                            rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Defense families ranked for this model, each tied to a measured number.

    Ranking: adversarial training first (the only family that holds up under adaptive
    attacks in the literature, Madry et al. 2018; its evidence is the worst case at the
    largest budget);
    black-box exposure controls second when a query-only attack succeeded (cheap to deploy,
    and a deployed device rarely leaks its weights); then image-level preprocessing,
    adversarial-example detection and feature enhancement, which are weaker against
    adaptive attackers and must be evaluated with them."""
    first = worst[0] if worst else {}
    last = worst[-1] if worst else {}
    clean = _dict(results.get("clean")).get("accuracy")
    black = black_box_evidence(rows)
    black_broke = any((b["cell"].get("n_broken") or 0) > 0 for b in black)
    items: list[dict[str, Any]] = [
        {"family": "Adversarial training", "example": "PGD adversarial training (PGD-AT, Madry et al. 2018) "
         "at the largest audited budget; TRADES where clean accuracy must be traded explicitly",
         "evidence": {"kind": "worst", "eps_255": last.get("eps_255"), "value": last.get("robust_accuracy"),
                      "clean": clean},
         "note": "Retrain and re-run this audit at the same budgets; expect some loss of clean accuracy."},
        {"family": "Image-level preprocessing", "example": "randomised denoising with a majority vote over "
         "noisy copies (randomised smoothing / MedRDF-style)",
         "evidence": {"kind": "worst", "eps_255": first.get("eps_255"), "value": first.get("robust_accuracy"),
                      "clean": clean},
         "note": "Small budgets are what denoising removes best; evaluate with adaptive attacks (EOT, BPDA), "
                 "not only the attacks in this report."},
        {"family": "Adversarial-example detection", "example": "a detector on penultimate-layer features that "
         "withholds a result and asks for a re-acquisition",
         "evidence": {"kind": "worst", "eps_255": first.get("eps_255"), "value": first.get("robust_accuracy"),
                      "clean": clean},
         "note": "Detection turns a silent misdiagnosis into a visible refusal; measure its false-alarm rate on clean images."},
        {"family": "Feature enhancement", "example": "feature denoising blocks or robust-feature regularisers "
         "inside the network",
         "evidence": {"kind": "worst", "eps_255": last.get("eps_255"), "value": last.get("robust_accuracy"),
                      "clean": clean},
         "note": "Architectural change; combine with adversarial training rather than replacing it."},
    ]
    if black:
        bb = {"family": "Black-box exposure controls", "example": "per-client query limits and rate limiting, "
              "rounding or withholding output confidences, logging of repeated near-duplicate queries",
              "evidence": {"kind": "black-box", "items": black},
              "note": "These do not make the model robust; they raise the cost of query-only attacks."}
        items.insert(1 if black_broke else len(items), bb)
    # Measured defenses (results["defenses"], from `medaudit harden` or a defended audit)
    # are cited under the family they belong to.
    family_of = {"training": "Adversarial training", "preprocessing": "Image-level preprocessing",
                 "detection": "Adversarial-example detection", "feature": "Feature enhancement"}
    measured = [d for d in _list(results.get("defenses")) if isinstance(d, dict)]
    for rank, item in enumerate(items, start=1):
        item["rank"] = rank
        item["measured"] = [d for d in measured if family_of.get(str(d.get("family"))) == item["family"]]
    return items


def _base64(value: Any) -> str | None:
    return value if isinstance(value, str) and BASE64_RE.fullmatch(value) else None


def gallery(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Gallery items (both tasks) whose images are plain base64 and whose legend colours are
    colours: a path, a URL or CSS in either is dropped, never inlined."""
    out = []
    for item in _list(results.get("gallery")):
        if not isinstance(item, dict):
            continue
        legend = [{**entry, "colour": css_colour(entry.get("colour"))}
                  for entry in _list(item.get("legend")) if isinstance(entry, dict)]
        out.append({**item, **{k: _base64(item.get(k)) for k in IMAGE_KEYS}, "legend": legend})
    return out


# --------------------------------------------------------------------- figures
def _ci(block: Any) -> tuple[float, float] | None:
    ci = _dict(block).get("ci95")
    return (ci[0], ci[1]) if isinstance(ci, list) and len(ci) == 2 and all(is_finite(v) for v in ci) else None


def figures(results: dict[str, Any], eps_list: list[float], rows: list[dict[str, Any]],
            worst: list[dict[str, Any]], classes: list[dict[str, Any]]) -> dict[str, Any]:
    """Inline SVG figures (already escaped by matplotlib) with their alt text and caption."""
    out: dict[str, Any] = {}
    clean = _dict(results.get("clean"))
    task = _dict(results.get("model")).get("task", "classification")
    mode = _dict(results.get("config")).get("mode", "cascade")
    if task != "classification" or not worst or not is_finite(clean.get("accuracy")):
        return out
    xs = [0.0] + [w.get("eps_255") for w in worst]
    curves = []
    for row in rows:
        values = [clean.get("accuracy")] + [number_or_none(c.get("robust_accuracy")) if c else None for c in row["cells"]]
        cis = [_ci(clean)] + [_ci(c) if c else None for c in row["cells"]]
        curves.append(plots.Curve(row["title"], [0.0] + list(eps_list), values, cis))
    curves.append(plots.Curve("worst case", xs, [clean.get("accuracy")] + [number_or_none(w.get("robust_accuracy")) for w in worst],
                              [_ci(clean)] + [_ci(w) for w in worst], emphasis=True))
    worst_text = ", ".join(f"{pct(w.get('robust_accuracy'))} at {eps255(w.get('eps_255'))}" for w in worst)
    alt = (f"Line chart of accuracy against the L-inf budget. Clean accuracy {pct(clean.get('accuracy'))}; "
           f"worst case over all attacks {worst_text}.")
    basis = ("cumulative: each line is the worst case over that attack and the cheaper ones run before it"
             if mode == "cascade" else "each attack on its own, run on every clean-correct image")
    out["accuracy"] = {
        "svg": Markup(plots.accuracy_curves(curves, alt=alt, id_prefix="fig-acc")), "alt": alt,
        "caption": f"Accuracy against the L-inf budget (eps = 0 is clean accuracy); error bars are 95% "
                   f"Wilson intervals. Attack lines are {basis}. The black line is the worst case per image.",
    }
    if classes and any(c["clean"] for c in classes):
        names = [c["name"] for c in classes]
        groups = [plots.BarGroup("clean", [number_or_none(_dict(c["clean"]).get("accuracy")) for c in classes],
                                 [_ci(c["clean"]) for c in classes])]
        for j, w in enumerate(worst):
            groups.append(plots.BarGroup(eps255(w.get("eps_255")),
                                         [number_or_none(_dict(c["by_eps"][j]).get("accuracy")) for c in classes],
                                         [_ci(c["by_eps"][j]) for c in classes]))
        parts = []
        for c in classes:
            under = ", ".join(f"{pct(_dict(b).get('accuracy'))} at {eps255(w.get('eps_255'))}"
                              for b, w in zip(c["by_eps"], worst))
            parts.append(f"{c['name']}: {pct(_dict(c['clean']).get('accuracy'))} clean, {under}")
        alt_bars = "Bar chart of accuracy per class, clean and under the worst-case attack. " + "; ".join(parts) + "."
        out["per_class"] = {
            "svg": Markup(plots.grouped_bars(names, groups, alt=alt_bars, id_prefix="fig-class")), "alt": alt_bars,
            "caption": "Accuracy per class, clean (grey) and under the worst case over all attacks at each "
                       "budget; whiskers are 95% Wilson intervals.",
        }
    return out


def segmentation_figures(results: dict[str, Any]) -> dict[str, Any] | None:
    """Figures of a segmentation audit (Dice / IoU / missed rate against eps)."""
    figs = build_segmentation_figures(results) or {}
    # matplotlib escapes the text inside the SVG; mark it safe so autoescape keeps it markup.
    return {k: {**v, "svg": Markup(v["svg"])} if isinstance(v, dict) and isinstance(v.get("svg"), str) else v
            for k, v in figs.items()}


# ------------------------------------------------------------------------ whole
def build_context(results: dict[str, Any], rendered_at: str | None = None) -> dict[str, Any]:
    """Everything a report template needs, next to the raw ``results`` (as ``r``)."""
    model = _dict(results.get("model"))
    data = _dict(results.get("data"))
    config = _dict(results.get("config"))
    summary = _dict(results.get("summary"))
    task = model.get("task") or config.get("task") or "classification"
    # an entry without a numeric budget cannot be placed in a table or on an axis
    worst = [w for w in _list(results.get("worst_case")) if isinstance(w, dict) and is_finite(w.get("eps_255"))]
    eps_list, rows = attack_table(results)
    classes = per_class_rows(results, worst) if task == "classification" else []
    problems = evidence_problems(results)
    return {
        "r": results,
        "model": model, "data": data, "config": config, "summary": summary,
        "clean": _dict(results.get("clean")), "modality": _dict(results.get("modality")),
        "environment": _dict(results.get("environment")),
        "task": task, "is_classification": task == "classification",
        "title": model.get("name") or "unnamed model",
        "date": short_date(results.get("created")),
        "synthetic": bool(data.get("synthetic")),
        "complete": results.get("status", "complete") == "complete",
        "verdict": verdict(results),
        "eps_list": eps_list, "rows": rows, "worst": worst, "classes": classes,
        "scope": threat_scope(rows, results),
        "most_effective": most_effective(summary, rows),
        "impact": [i for i in _list(summary.get("class_impact")) if isinstance(i, dict)],
        "problems": problems,
        # checks that failed or warned outrank every robustness reading: fix the evaluation first
        "recommendation": "fix-evaluation" if problems["unreliable"] else recommendation_level(summary, eps_list),
        "defenses": defense_recommendations(results, worst, rows),
        "measured_defenses": [d for d in _list(results.get("defenses")) if isinstance(d, dict)],
        "gallery": gallery(results),
        "universal": universal_view(results), "saliency": saliency_view(results),
        "corruption": corruption_view(results),  # natural robustness (auditor.engine.corruption)
        "query_target": query_target_view(results),  # a model audited through queries only
        "checks": checks_view(results),
        "clinical": _dict(results.get("clinical")),
        "targeted": _dict(results.get("targeted")),
        "warnings": [str(w) for w in _list(results.get("warnings"))],
        "metadata": metadata_rows(results.get("metadata")),
        "plugins_used": [p for p in _list(_dict(results.get("provenance")).get("plugins")) if isinstance(p, dict)],
        "figures": figures(results, eps_list, rows, worst, classes),
        "seg_figures": segmentation_figures(results) if task == "segmentation" else None,
        "rendered_at": rendered_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

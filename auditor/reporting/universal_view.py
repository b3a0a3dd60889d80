"""The report's view of the universal-perturbation and saliency blocks of results.json.

Numbers are passed through as the engine wrote them; only what reaches markup in a
special way is checked here: base64 PNG payloads (anything else is dropped, never
inlined) and the numbers a table formats (a non-number becomes None, shown as n/a)."""

from __future__ import annotations

import re
from typing import Any

BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
PER_EPS_IMAGES = ("perturbation_png", "example_png")
SALIENCY_IMAGES = ("clean_png", "clean_saliency_png", "adv_saliency_png")


def _png(value: Any) -> str | None:
    return value if isinstance(value, str) and BASE64.fullmatch(value) else None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value  # counts stay integers (shown without decimals)
    return float(value) if value == value else None


def _numbers(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: _number(row.get(k)) for k in keys}


def _interval(value: Any) -> list[float | None] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return [_number(value[0]), _number(value[1])]
    return None


UAP_NUMBERS = ("eps_255", "fooling_rate", "fit_fooling_rate", "robust_accuracy", "n_fooled", "n_robust",
               "beyond_worst_case", "dice", "dice_drop", "missed_rate", "attack_time_s")
SALIENCY_NUMBERS = ("eps_255", "n", "n_fooled", "inside_clean", "inside_adv", "inside_change", "top_overlap")


def _per_eps(results: dict[str, Any], key: str, numbers: tuple[str, ...], intervals: tuple[str, ...],
             images: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The block ``key`` and its per-eps rows (numbers, [low, high] intervals and PNGs
    checked), or None when results.json has no such block."""
    block = results.get(key)
    if not isinstance(block, dict) or not isinstance(block.get("per_eps"), list):
        return None
    rows = [{**_numbers(row, numbers), **{k: _interval(row.get(k)) for k in intervals},
             **{k: _png(row.get(k)) for k in images}}
            for row in block["per_eps"] if isinstance(row, dict) and _number(row.get("eps_255")) is not None]
    return block, rows


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def universal_view(results: dict[str, Any]) -> dict[str, Any] | None:
    """The ``universal`` block for the template, or None when the audit has none."""
    found = _per_eps(results, "universal", UAP_NUMBERS, ("ci95", "fooling_rate_ci95", "dice_ci95"), PER_EPS_IMAGES)
    if found is None:
        return None
    block, rows = found
    fit, evaluation, clean = _dict(block.get("fit")), _dict(block.get("eval")), _dict(block.get("clean"))
    return {
        "rows": rows, "task": block.get("task"), "params": _dict(block.get("params")),
        "fit": {"source": fit.get("source"), "data": fit.get("data"), "split": fit.get("split"),
                "n": _number(fit.get("n")), "overlap": _number(fit.get("overlap")) or 0, "seed": fit.get("seed")},
        "eval": {"data": evaluation.get("data"), "split": evaluation.get("split"), "n": _number(evaluation.get("n"))},
        "clean": {"accuracy": _number(clean.get("accuracy")), "dice": _number(clean.get("dice")),
                  "ci95": _interval(clean.get("ci95")), "dice_ci95": _interval(clean.get("dice_ci95"))},
        "beyond_worst_case": sum(r["beyond_worst_case"] or 0 for r in rows),
        "visibility_note": block.get("visibility_note"),
    }


def saliency_view(results: dict[str, Any]) -> dict[str, Any] | None:
    """The ``saliency`` block for the template, or None when the audit has none."""
    found = _per_eps(results, "saliency", SALIENCY_NUMBERS,
                     ("inside_clean_ci95", "inside_adv_ci95", "inside_change_ci95"))
    if found is None:
        return None
    block, rows = found
    examples = [{**{k: _png(item.get(k)) for k in SALIENCY_IMAGES}, "id": str(item.get("id", "")),
                 **_numbers(item, ("eps_255", "inside_clean", "inside_adv"))}
                for item in (block.get("examples") if isinstance(block.get("examples"), list) else [])
                if isinstance(item, dict)]
    return {"rows": rows, "examples": examples, "has_masks": bool(block.get("has_masks")),
            "method": block.get("method"), "attack": block.get("attack"), "n": _number(block.get("n")),
            "note": block.get("note")}

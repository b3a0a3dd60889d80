"""Headline facts of a finished audit, computed by the engine so reporters only render."""

from __future__ import annotations

from typing import Any

from auditor.stats import proportion_ci, wilson_n_for_half_width

TARGET_HALF_WIDTH = 0.05  # "±5 points": the precision a reader usually assumes of a percentage


def _precision(label: str, accuracy: float, n: int, eps_255: float | None = None) -> dict[str, Any]:
    low, high = proportion_ci(round(accuracy * n), n)
    return {"label": label, "eps_255": eps_255, "accuracy": accuracy, "n": n, "ci95": [low, high],
            "ci_width": high - low, "half_width": (high - low) / 2,
            "n_for_target": wilson_n_for_half_width(accuracy, TARGET_HALF_WIDTH),
            "target_reached": (high - low) / 2 <= TARGET_HALF_WIDTH}


def sample_size(results: dict[str, Any]) -> dict[str, Any] | None:
    """How precise the sample made the headline accuracies, and how many images a ±5-point
    95% interval would need at each observed accuracy (Wilson: the interval the report
    prints; the normal approximation n = z^2 p(1-p)/w^2 would claim almost no images are
    needed near 0% or 100%, where robust accuracies often sit)."""
    clean = results["clean"]
    n = clean.get("n")
    if not n:
        return None
    rows = [_precision("clean accuracy", clean["accuracy"], n)]
    rows += [_precision("worst case", w["robust_accuracy"], w.get("n", n), w["eps_255"])
             for w in results["worst_case"]]
    return {"target_half_width": TARGET_HALF_WIDTH, "confidence": 0.95, "method": (
        "Wilson score interval; n for the target is the smallest n whose interval at the observed accuracy is at "
        "most ±5 points (half its width)"), "rows": rows}


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Headline facts for the executive summary, computed here so reporters only render."""
    clean_block = results["clean"]
    clean = clean_block["accuracy"]
    worst = results["worst_case"]
    halving = next((w["eps_255"] for w in worst if w["robust_accuracy"] <= clean / 2), None)
    mode = results["config"]["mode"]
    if mode == "independent":
        at_max = [a for a in results["attacks"] if worst and a["eps_255"] == worst[-1]["eps_255"]]
        best = min(at_max, key=lambda a: a["robust_accuracy"], default=None)
        most_effective = {"attack": best["attack"] if best else None,
                          "basis": "lowest robust accuracy at the largest eps, each attack run on every sample"}
    else:
        totals = dict(worst[-1]["broken_by"]) if worst else {}
        top = max(totals, key=totals.get) if totals else None
        most_effective = {"attack": top, "basis": "cascade: broke the most samples at the largest eps, "
                          "attacks run cheap to expensive on the samples still robust"}
    positive = (results.get("clinical") or {}).get("positive_class") or results["modality"].get("positive_class")
    class_names = results["model"]["class_names"]
    focus = positive if positive in class_names else None
    affected = []
    for w in worst:
        per_class = w["per_class"]
        if not per_class:
            continue
        name = focus or min(per_class, key=lambda c: per_class[c]["accuracy"])
        if name in per_class:
            clean_acc = clean_block["per_class"].get(name, {}).get("accuracy")
            flips = [f for f in w["flips"] if f["from"] == name]
            n_class = per_class[name]["n"]
            affected.append({
                "eps_255": w["eps_255"], "class": name, "accuracy": per_class[name]["accuracy"],
                "clean_accuracy": clean_acc,
                "misreported_fraction": (n_class - round(per_class[name]["accuracy"] * n_class)) / n_class,
                "flipped_to": max(flips, key=lambda f: f["count"])["to"] if flips else None,
            })
    return {
        "clean_accuracy": clean,
        "worst_case": {f"{w['eps_255']:g}": w["robust_accuracy"] for w in worst},
        "eps_255_halving": halving,
        "most_effective_attack": most_effective,
        "focus_class": focus,
        "class_impact": affected,
        "sample_size": sample_size(results),
    }


def summarise_segmentation(results: dict[str, Any]) -> dict[str, Any]:
    """Headline facts for the executive summary, computed here so reporters only render."""
    clean = results["clean"]
    worst = results["worst_case"]
    attacks = results["attacks"]
    clean_dice = clean["dice"]
    halving = next((w["eps_255"] for w in worst if clean_dice and w["dice"] is not None
                    and w["dice"] <= clean_dice / 2), None)
    largest = max((a["eps_255"] for a in attacks), default=None)
    at_max = [a for a in attacks if a["eps_255"] == largest and a["dice"] is not None]
    best = min(at_max, key=lambda a: a["dice"], default=None)
    by_loss: dict[str, dict[str, Any]] = {}
    for a in at_max:
        if not a["targeted"] and (a["loss"] not in by_loss or a["dice"] < by_loss[a["loss"]]["dice"]):
            by_loss[a["loss"]] = {"attack": a["attack"], "dice": a["dice"], "iou": a["iou"]}
    stronger_loss = min(by_loss, key=lambda k: by_loss[k]["dice"]) if by_loss else None
    table = [{"attack": a["attack"], "loss": a["loss"], "eps_255": a["eps_255"], "dice": a["dice"],
              "iou": a["iou"], "missed_rate": a["missed_rate"]} for a in attacks]
    return {
        "clean_dice": clean_dice,
        "clean_iou": clean["iou"],
        "clean_missed_rate": clean["missed_rate"],
        "worst_case": {f"{w['eps_255']:g}": w["dice"] for w in worst},
        "worst_case_iou": {f"{w['eps_255']:g}": w["iou"] for w in worst},
        "worst_case_missed_rate": {f"{w['eps_255']:g}": w["missed_rate"] for w in worst},
        "missed_by_any_attack_rate": {f"{w['eps_255']:g}": w.get("missed_rate_any") for w in worst},
        "eps_255_halving": halving,
        "most_effective_attack": {
            "attack": best["attack"] if best else None, "loss": best["loss"] if best else None,
            "eps_255": largest, "dice": best["dice"] if best else None,
            "basis": "lowest mean Dice at the largest eps; every attack runs on every image",
        },
        "strongest_loss": {"loss": stronger_loss, "eps_255": largest, "by_loss": by_loss},
        "table": table,
    }

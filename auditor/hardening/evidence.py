"""The measured evidence of adversarial training, from its log and from before/after audits.

Pure functions of JSON: ``compare``, the defense section of a report and ``harden`` itself
state the same sentences from the same numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditor.errors import InputError

LOG_SUFFIX = ".harden.json"


def log_path_for(model_out: Path) -> Path:
    """Where the training log of a hardened model lives: ``hardened.pt`` -> ``hardened.harden.json``."""
    return model_out.with_name(model_out.stem + LOG_SUFFIX)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


METHOD_TITLES = {"pgd-at": "PGD-AT at {eps}/255", "trades": "TRADES at {eps}/255",
                 "feature-denoising": "feature denoising + PGD-AT at {eps}/255",
                 # trained without attacks; its held-out PGD ignores the randomness (no EoT)
                 "block-switching": "autoencoder + block switching (PGD at {eps}/255 without EoT)"}


def _method_title(method: str, eps_255: float) -> str:
    return METHOD_TITLES.get(method, METHOD_TITLES["trades"]).format(eps=f"{eps_255:g}")


def evidence_from_log(log: dict[str, Any]) -> dict[str, Any]:
    """A ``results["defenses"]`` entry from a harden log: held-out numbers before and after."""
    eps = float(log["settings"]["eps_255"])
    before, after = log["before"], log["after"]
    title = _method_title(log["method"], eps)
    n = after.get("n")
    if log["task"] == "classification":
        message = (f"{title} measured during hardening on {n} held-out images: PGD accuracy at {eps:g}/255 from "
                   f"{_pct(before['pgd_accuracy'])} to {_pct(after['pgd_accuracy'])}, clean accuracy "
                   f"{_pct(before['clean_accuracy'])} -> {_pct(after['clean_accuracy'])}")
        if before.get("pgd_balanced_accuracy") is not None and after.get("pgd_balanced_accuracy") is not None:
            # accuracy alone rewards a drift towards the majority class; the balanced figure does not
            message += (f" (mean over classes: PGD {_pct(before['pgd_balanced_accuracy'])} -> "
                        f"{_pct(after['pgd_balanced_accuracy'])}, clean {_pct(before['clean_balanced_accuracy'])} -> "
                        f"{_pct(after['clean_balanced_accuracy'])})")
        clean_b, clean_a, rob_b, rob_a = (before["clean_accuracy"], after["clean_accuracy"],
                                          before["pgd_accuracy"], after["pgd_accuracy"])
    else:
        message = (f"{title} ({log['settings']['inner_loss']} inner loss) measured during hardening on {n} held-out "
                   f"images: Dice under PGD-Dice at {eps:g}/255 from {before['pgd_dice']:.2f} to "
                   f"{after['pgd_dice']:.2f}, clean Dice {before['clean_dice']:.2f} -> {after['clean_dice']:.2f}")
        clean_b, clean_a, rob_b, rob_a = before["clean_dice"], after["clean_dice"], before["pgd_dice"], after["pgd_dice"]
    metric = "accuracy" if log["task"] == "classification" else "dice"
    return {
        "name": log["method"], "title": title, "family": "training", "source": "harden log (held-out split)",
        "metric": metric, "numbers": "pgd",
        "clean_accuracy": clean_a if metric == "accuracy" else None,
        "worst_case": [{"eps_255": eps, "robust_accuracy": rob_a}] if metric == "accuracy" else [],
        "baseline": ({"clean_accuracy": clean_b, "worst_case": [{"eps_255": eps, "robust_accuracy": rob_b}]}
                     if metric == "accuracy" else None),
        "before": {"clean": clean_b, "robust": {f"{eps:g}": rob_b}},
        "after": {"clean": clean_a, "robust": {f"{eps:g}": rob_a}},
        "message": message,
    }


def evidence_from_audits(before: dict[str, Any], after: dict[str, Any], log: dict[str, Any] | None = None,
                         eps_255: float | None = None) -> dict[str, Any]:
    """A ``results["defenses"]`` entry from two audits of the same data: the model before
    and after hardening ("PGD-AT at 4/255 measured: worst-case accuracy at 4/255 from 3% to
    41%, clean accuracy 78% -> 70%"; for segmentation, worst-case Dice)."""
    segmentation = (before.get("config") or {}).get("task") == "segmentation"
    key = "dice" if segmentation else "robust_accuracy"
    wb = {float(w["eps_255"]): w.get(key) for w in before.get("worst_case") or []}
    wa = {float(w["eps_255"]): w.get(key) for w in after.get("worst_case") or []}
    common = sorted(set(wb) & set(wa))
    if not common:
        raise InputError("the two audits share no eps: nothing to compare")
    method = (log or {}).get("method", "hardening")
    trained_eps = float((log or {}).get("settings", {}).get("eps_255", eps_255 or common[0]))
    at = eps_255 if eps_255 is not None else min(common, key=lambda e: abs(e - trained_eps))
    title = _method_title(method, trained_eps) if log else "Hardened model"
    clean_key = "dice" if segmentation else "accuracy"
    cb, ca = (before.get("clean") or {}).get(clean_key), (after.get("clean") or {}).get(clean_key)
    if segmentation:
        fmt = (lambda v: "n/a" if v is None else f"{v:.2f}")
        message = (f"{title} measured: worst-case Dice at {at:g}/255 from {fmt(wb[at])} to {fmt(wa[at])}, "
                   f"clean Dice {fmt(cb)} -> {fmt(ca)}")
    else:
        message = (f"{title} measured: worst-case accuracy at {at:g}/255 from {_pct(wb[at])} to {_pct(wa[at])}, "
                   f"clean accuracy {_pct(cb)} -> {_pct(ca)}")
        balanced_b, balanced_a = _balanced_worst(before, at), _balanced_worst(after, at)
        if balanced_b is not None and balanced_a is not None:
            # accuracy alone rewards a drift towards the majority class; the balanced figure does not
            message += f" (mean over classes at {at:g}/255: {_pct(balanced_b)} -> {_pct(balanced_a)})"
    metric = "dice" if segmentation else "accuracy"
    return {
        "name": method, "title": title, "family": "training", "source": "two audits (before/after)",
        "metric": metric, "numbers": "worst case over the audit's attacks",
        "clean_accuracy": None if segmentation else ca,
        "worst_case": [] if segmentation else [{"eps_255": e, "robust_accuracy": wa[e]} for e in common],
        "baseline": None if segmentation else {
            "clean_accuracy": cb, "worst_case": [{"eps_255": e, "robust_accuracy": wb[e]} for e in common]},
        "before": {"clean": cb, "robust": {f"{e:g}": wb[e] for e in common}},
        "after": {"clean": ca, "robust": {f"{e:g}": wa[e] for e in common}},
        "message": message,
    }


def _balanced_worst(results: dict[str, Any], eps_255: float) -> float | None:
    for w in results.get("worst_case") or []:
        if float(w["eps_255"]) == eps_255 and w.get("per_class"):
            values = [c["accuracy"] for c in w["per_class"].values()]
            return sum(values) / len(values)
    return None

"""Checks decided from the recorded numbers alone (no model calls): 4 (the rule), 10 and 11."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from auditor.evaluation.checks.base import check_result, tolerance_samples
from auditor.stats import Z95


def check_class_count(attacks: list[dict[str, Any]], num_classes: int) -> dict[str, Any]:
    """Check 10, from the recorded attack parameters alone.

    DLR (Croce and Hein 2020) divides by z_pi1 - z_pi3: it needs 3 classes; its targeted
    form uses z_pi3 and z_pi4 and needs 4. A targeted attack needs another class to aim at,
    and ``n_target_classes`` may not exceed K - 1."""
    problems, seen = [], {}
    for attack in attacks:
        params = attack.get("params") or {}
        name = attack.get("name", "?")
        subs = [str(s).lower() for s in params.get("sub_attacks") or []]
        loss = str(params.get("loss") or "").lower()
        uses_dlr = "dlr" in loss or any("dlr" in s for s in subs)
        targeted_dlr = ("dlr" in loss and (params.get("targeted") or "targeted" in loss)) or any(
            s in ("apgd-t", "apgd-dlr-t") for s in subs)
        targeted = bool(params.get("targeted")) or any(s.endswith("-t") for s in subs)
        seen[name] = {"loss": loss or None, "sub_attacks": subs or None, "targeted": targeted}
        if targeted_dlr and num_classes < 4:
            problems.append(f"{name} uses the targeted DLR loss, which needs at least 4 classes")
        elif uses_dlr and num_classes < 3:
            problems.append(f"{name} uses the DLR loss, which needs at least 3 classes")
        if targeted and num_classes < 2:
            problems.append(f"{name} is targeted but the model has a single class")
        n_target = params.get("n_target_classes")
        if targeted and n_target is not None and int(n_target) > num_classes - 1:
            problems.append(f"{name} aims at {n_target} target classes but only {num_classes - 1} exist")
    numbers = {"num_classes": num_classes, "attacks": seen}
    threshold = "DLR needs >= 3 classes, targeted DLR >= 4, n_target_classes <= K - 1"
    if problems:
        return check_result(10, "class-count", "Losses suit the number of classes", "fail",
                            "; ".join(problems) + ": those sub-attacks are meaningless or crash", numbers,
                            threshold=threshold)
    return check_result(10, "class-count", "Losses suit the number of classes", "pass",
                        f"no DLR or targeted loss is used beyond what {num_classes} classes allow", numbers,
                        threshold=threshold)


def check_monotone_sequences(sequences: dict[str, list[tuple[float, int, int]]], judged: set[str],
                             fraction: float = 0.02, minimum: int = 1) -> dict[str, Any]:
    """Check 4: each sequence is (eps_255, n_robust, n) ascending in eps; a judged sequence
    whose robust count rises by more than the tolerance fails."""
    rises, numbers = [], {}
    for name, seq in sequences.items():
        numbers[name] = [{"eps_255": e, "robust_accuracy": (k / n if n else None), "n": n} for e, k, n in seq]
        for (e0, k0, n0), (e1, k1, _) in zip(seq, seq[1:]):
            tol = tolerance_samples(n0, fraction, minimum)
            if k1 > k0:
                rises.append((name, e0, e1, k1 - k0, tol, name in judged))
    bad = [r for r in rises if r[5] and r[3] > r[4]]
    numbers["rises"] = [{"sequence": r[0], "from_eps_255": r[1], "to_eps_255": r[2], "samples": r[3],
                         "tolerance_samples": r[4], "judged": r[5]} for r in rises]
    threshold = f"a rise of more than max({minimum} sample, {fraction:.0%}) between consecutive eps fails"
    name = "Robust accuracy never increases with eps"
    if bad:
        r = bad[0]
        return check_result(4, "monotone", name, "fail",
                            f"{r[0]} robust accuracy rises by {r[3]} samples from eps {r[1]:g} to {r[2]:g}/255: "
                            "a larger budget must not help the model; the attack is not converging", numbers,
                            tolerance=threshold)
    small = [r for r in rises if r[5]]
    note = f" ({len(small)} rise(s) within tolerance)" if small else ""
    return check_result(4, "monotone", name, "pass",
                        f"robust accuracy does not increase with eps in {len(judged)} sequence(s){note}", numbers,
                        tolerance=threshold)


# --------------------------------------------------------------- model checks
# Check 11 thresholds. A model that predicts one class for (nearly) everything, or ranks no
# better than chance, or is never confident, survives every attack because it has nothing
# to lose: its "robustness" measures uselessness. The rules are deliberately loose so a
# weak but working model passes; they catch set-up errors (wrong input size, wrong
# normalisation, wrong weights), whose signature is exactly this.
DOMINANT_SHARE = 0.95  # fail: one class gets >= 95% of predictions while its true share is lower
CHANCE_MARGIN = 0.05  # fail: the upper 95% bound of balanced accuracy is below 1/K + 0.05
UNSURE_MARGIN = 0.10  # fail: max probability below 1/K + 0.10 (0.6 for two classes) ...
UNSURE_SHARE = 0.95  # ... on >= 95% of samples


def balanced_accuracy_ci(labels: np.ndarray, preds: np.ndarray, z: float = Z95) -> dict[str, Any]:
    """Mean per-class recall over the classes present, with a normal-approximation interval
    from the per-class binomial variances (var = sum p_k (1 - p_k) / n_k / K^2)."""
    recalls, variance = [], 0.0
    present = np.unique(labels)
    for c in present:
        mask = labels == c
        p = float((preds[mask] == c).mean())
        recalls.append(p)
        variance += p * (1 - p) / int(mask.sum())
    k = len(present)
    value = float(np.mean(recalls)) if recalls else float("nan")
    half = z * math.sqrt(variance) / k if k else float("nan")
    return {"value": value, "ci95": [max(0.0, value - half), min(1.0, value + half)],
            "ci_method": "normal approximation over per-class recalls", "per_class_recall": recalls,
            "classes_present": k}


def check_degenerate(labels: np.ndarray, preds: np.ndarray, probs: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Check 11, from the clean pass alone (no model calls): is the classifier useful at all?"""
    name = "The clean model is a working classifier"
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    n, chance = len(labels), 1.0 / max(num_classes, 1)
    threshold = (f"fail when one class gets >= {DOMINANT_SHARE:.0%} of predictions (more than its true share), "
                 f"when the upper 95% bound of balanced accuracy is below chance (1/K) + {CHANCE_MARGIN:g}, or when "
                 f"the top probability stays below 1/K + {UNSURE_MARGIN:g} on >= {UNSURE_SHARE:.0%} of samples; "
                 f"warn when balanced accuracy itself is below chance + {CHANCE_MARGIN:g}")
    if n == 0 or len(np.unique(labels)) < 2:
        return check_result(11, "degenerate", name, "skipped",
                            "the data holds fewer than two classes: usefulness cannot be judged", {"n": n},
                            threshold=threshold)
    top = int(np.bincount(preds, minlength=num_classes).argmax())
    share, true_share = float((preds == top).mean()), float((labels == top).mean())
    balanced = balanced_accuracy_ci(labels, preds)
    unsure = float((np.asarray(probs).max(axis=1) < chance + UNSURE_MARGIN).mean())
    numbers = {"n": n, "num_classes": num_classes, "chance": chance, "dominant_class": top,
               "dominant_share": share, "dominant_true_share": true_share, "balanced_accuracy": balanced,
               "unsure_share": unsure}
    problems = []
    if share >= DOMINANT_SHARE and share > true_share:
        problems.append(f"{share:.0%} of predictions are class {top} (its true share is {true_share:.0%})")
    if balanced["ci95"][1] < chance + CHANCE_MARGIN:
        problems.append(f"balanced accuracy {balanced['value']:.2f} (95% CI up to {balanced['ci95'][1]:.2f}) "
                        f"is at chance ({chance:.2f})")
    if unsure >= UNSURE_SHARE:
        problems.append(f"the top probability stays below {chance + UNSURE_MARGIN:.2f} on {unsure:.0%} of samples")
    if problems:
        return check_result(11, "degenerate", name, "fail",
                            "; ".join(problems) + ": a model that does not classify has nothing for an attack to "
                            "break, so its robustness numbers mean nothing; check the input size, channels, "
                            "normalisation (--mean/--std) and the weights", numbers, threshold=threshold)
    if balanced["value"] < chance + CHANCE_MARGIN:
        return check_result(11, "degenerate", name, "warn",
                            f"balanced accuracy {balanced['value']:.2f} is close to chance ({chance:.2f}); the "
                            "interval is too wide to call the model useless", numbers, threshold=threshold)
    return check_result(11, "degenerate", name, "pass",
                        f"balanced accuracy {balanced['value']:.2f} (chance {chance:.2f}); the most predicted "
                        f"class gets {share:.0%} of predictions", numbers, threshold=threshold)

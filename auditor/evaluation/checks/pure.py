"""Checks decided from the recorded numbers alone (no model calls): 4 (the rule) and 10."""

from __future__ import annotations

from typing import Any

from auditor.evaluation.checks.base import check_result, tolerance_samples


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

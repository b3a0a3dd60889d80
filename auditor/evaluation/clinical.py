"""Clinical metrics for one positive class (the disease), clean and under attack.

* Sensitivity (recall of the positive class) and specificity (non-positive samples not
  called positive), each with a 95% Wilson interval; for two-class models the AUROC of the
  positive-class probability with a 95% DeLong interval (DeLong et al. 1988).
* Under attack, per eps, from the audit's worst-case predictions (a sample counts as broken
  when any attack at any eps <= this eps broke it): the same metrics plus the
  missed-disease rate (true positives flipped to a non-positive class) and the false-alarm
  rate (true negatives flipped to the positive class).
* Targeted PGD in both clinical directions (positive -> negative, negative -> positive) on
  the clean-correct samples of the source class, success rates with Wilson intervals.

AUROC under attack needs a score for every sample, attacked or not. For two-class models
The ``clinical-targeted-pgd`` attack (plugins/attacks/targeted_pgd.py) pushes every sample towards the other class (positives down,
negatives up: the worst case for ranking) at each eps; each sample's adversarial score is
the most adverse positive-class probability found by that run or by any audit attack that
broke it, carried over from smaller eps (a smaller ball lies inside a larger one). A sample is
not attacked again once its score is beyond every score of the other class and it already is
a hit (:func:`settled_in_ranking`): its place in the ranking is final, so AUROC, its interval
and the ROC curve are exactly those of attacking it again; its stored score is then the most
adverse one found so far (a bound), and samples whose final PGD iterate the validity checks
read are attacked in full regardless.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from auditor.errors import UsageError
from auditor.evaluation.battery import SharedTrajectories, step_outcomes
from auditor.evaluation.checks.base import check_subsample
from auditor.registry import get_registry
from auditor.stats import proportion_ci
from auditor.steps import attack_chunk, step_seed

Z95 = 1.959963984540054


# --------------------------------------------------------------- positive class
def _matches(name: str, names: Sequence[str]) -> list[int]:
    """Indices of ``names`` equal to ``name`` ignoring case and surrounding spaces
    ("pneumonia" names a ``PNEUMONIA/`` folder)."""
    key = name.strip().casefold()
    return [i for i, other in enumerate(names) if other.strip().casefold() == key]


def resolve_positive_class(requested: str | None, class_names: Sequence[str],
                           modality_positive: str | None, modality_name: str = "") -> dict[str, Any]:
    """Which class is the disease: ``{"index", "name", "source", "note", "needs_positive_class"}``
    (index None when there is none). ``--positive-class`` wins (exact name first, then
    ignoring case); then the modality's positive class when exactly one class name matches it
    ignoring case. Nothing else is guessed: classes named 0/1 say nothing about which one is
    the disease (in breastmnist, 0 is malignant), and metrics computed for the wrong class
    swap sensitivity and specificity, so without a match there are no clinical metrics and
    the report says that ``--positive-class`` is needed."""
    names = [str(c) for c in class_names]
    if requested is not None:
        found = [names.index(requested)] if requested in names else _matches(requested, names)
        if len(found) == 1:
            return {"index": found[0], "name": names[found[0]], "source": "--positive-class", "note": None,
                    "needs_positive_class": False}
        if found:
            raise UsageError(f"--positive-class: '{requested}' matches several classes ignoring case "
                             f"({', '.join(names[i] for i in found)}); give the exact name")
        raise UsageError(f"--positive-class: '{requested}' is not one of the classes ({', '.join(names)})")
    found = _matches(modality_positive, names) if modality_positive else []
    if len(found) == 1:
        return {"index": found[0], "name": names[found[0]], "source": "modality", "note": None,
                "needs_positive_class": False}
    preset = f"the {modality_name or 'modality'} preset"
    if not modality_positive:
        reason = f"{preset} names no positive class"
    elif found:
        reason = (f"'{modality_positive}' ({preset}) matches several classes "
                  f"({', '.join(names[i] for i in found)})")
    else:
        reason = f"'{modality_positive}' ({preset}) is not among the classes ({', '.join(names)})"
    return {"index": None, "name": None, "source": None, "needs_positive_class": True,
            "note": f"no clinical metrics: {reason}; pass --positive-class NAME to say which class is the disease"}


# -------------------------------------------------------------- pure metrics
def proportion(k: int, n: int) -> dict[str, Any]:
    low, high = proportion_ci(int(k), int(n))
    return {"value": (k / n) if n else None, "k": int(k), "n": int(n), "ci95": [low, high], "ci_method": "wilson"}


def compute_sensitivity_specificity(labels: np.ndarray, preds: np.ndarray, positive: int) -> dict[str, Any]:
    pos, neg = labels == positive, labels != positive
    return {"sensitivity": proportion(int((preds[pos] == positive).sum()), int(pos.sum())),
            "specificity": proportion(int((preds[neg] != positive).sum()), int(neg.sum()))}


def compute_auroc(scores: np.ndarray, is_positive: np.ndarray) -> dict[str, Any]:
    """AUROC (Mann-Whitney, ties count half) with DeLong's 95% interval."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    is_positive = np.asarray(is_positive, dtype=bool)
    x, y = scores[is_positive], scores[~is_positive]
    m, n = len(x), len(y)
    if m == 0 or n == 0:
        return {"value": None, "ci95": [None, None], "ci_method": "delong", "n_positive": m, "n_negative": n}
    tz = rankdata(np.concatenate([x, y]))
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
    low = high = None
    if m > 1 and n > 1:
        v10 = (tz[:m] - rankdata(x)) / n
        v01 = 1.0 - (tz[m:] - rankdata(y)) / m
        se = float(np.sqrt(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n))
        low, high = max(0.0, auc - Z95 * se), min(1.0, auc + Z95 * se)
    return {"value": float(auc), "ci95": [low, high], "ci_method": "delong", "n_positive": m, "n_negative": n}


def flip_rates(labels: np.ndarray, clean_pred: np.ndarray, adv_pred: np.ndarray, positive: int) -> dict[str, Any]:
    """Missed disease: true positives (clean-correct positives) now called non-positive.
    False alarm: true negatives (clean-correct non-positives) now called positive."""
    tp = (labels == positive) & (clean_pred == positive)
    tn = (labels != positive) & (clean_pred == labels)
    return {"missed_disease": proportion(int((adv_pred[tp] != positive).sum()), int(tp.sum())),
            "false_alarm": proportion(int((adv_pred[tn] == positive).sum()), int(tn.sum()))}


def worst_case_predictions(results: dict[str, Any], eps_255: float) -> np.ndarray:
    """Per-sample predictions under the audit's worst case at ``eps_255`` (the engine's
    rule: the prediction from the largest eps <= ``eps_255`` whose attack broke the sample)."""
    preds = np.asarray(results["samples"]["clean_pred"], dtype=np.int64).copy()
    seen = np.zeros(len(preds), dtype=bool)
    relevant = sorted((e for e in results["attacks"] if e["eps_255"] <= eps_255), key=lambda e: -e["eps_255"])
    for entry in relevant:
        for i, p in zip(entry["samples"]["broken"], entry["samples"]["adv_pred"]):
            if not seen[i]:
                seen[i] = True
                preds[i] = p
    return preds


def attack_predictions(results: dict[str, Any], entry: dict[str, Any]) -> np.ndarray:
    preds = np.asarray(results["samples"]["clean_pred"], dtype=np.int64).copy()
    for i, p in zip(entry["samples"]["broken"], entry["samples"]["adv_pred"]):
        preds[i] = p
    return preds


def clinical_metrics(results: dict[str, Any], positive: dict[str, Any],
                     adversarial_scores: dict[float, np.ndarray] | None = None) -> dict[str, Any]:
    """``results["clinical"]`` from a results dict (clean pass, attacks, worst case)."""
    block: dict[str, Any] = {"positive_class": positive["name"], "positive_index": positive["index"],
                             "source": positive["source"], "note": positive["note"],
                             "needs_positive_class": bool(positive.get("needs_positive_class"))}
    if positive["index"] is None:
        return block
    pos = int(positive["index"])
    samples = results["samples"]
    labels = np.asarray(samples["labels"], dtype=np.int64)
    clean_pred = np.asarray(samples["clean_pred"], dtype=np.int64)
    binary = len(results["model"]["class_names"]) == 2
    block["binary"] = binary
    block["clean"] = compute_sensitivity_specificity(labels, clean_pred, pos)
    clean_scores = np.asarray(samples["clean_probs"], dtype=np.float64)[:, pos] if binary else None
    if binary:
        block["clean"]["auroc"] = compute_auroc(clean_scores, labels == pos)
    worst = []
    for w in results["worst_case"]:
        preds = worst_case_predictions(results, w["eps_255"])
        row = {"eps_255": w["eps_255"], "eps": w["eps"], **compute_sensitivity_specificity(labels, preds, pos),
               **flip_rates(labels, clean_pred, preds, pos)}
        if binary and adversarial_scores is not None and w["eps_255"] in adversarial_scores:
            row["auroc"] = compute_auroc(adversarial_scores[w["eps_255"]], labels == pos)
        worst.append(row)
    block["worst_case"] = worst
    # Per attack only with --independent: in a cascade an entry holds just the samples that
    # attack broke after the cheaper ones, not its own predictions.
    block["attacks"] = [{"attack": e["attack"], "eps_255": e["eps_255"], "basis": "own (independent mode)",
                         **compute_sensitivity_specificity(labels, attack_predictions(results, e), pos),
                         **flip_rates(labels, clean_pred, attack_predictions(results, e), pos)}
                        for e in results["attacks"]] if results["config"]["mode"] == "independent" else []
    if binary:
        block["auroc_method"] = (
            "AUROC under attack ranks each sample's most adverse positive-class probability: targeted PGD towards "
            "the other class on every sample (the audit's PGD steps and step size), or any audit attack that broke "
            "it, carried over from smaller eps; a sample already ranked beyond every sample of the other class and "
            "already a hit is not attacked again (the AUROC cannot move); 95% CI by DeLong" if adversarial_scores is not None else
            "AUROC under attack not computed")
    block["metrics_basis"] = ("sensitivity, specificity and flip rates under attack use the audit's worst-case "
                              "predictions per eps (untargeted attacks on clean-correct samples)")
    return block


# ---------------------------------------------------------------- targeted PGD
TARGETED_ATTACK = "clinical-targeted-pgd"  # plugins/attacks/targeted_pgd.py


def _audit_hits(results: dict[str, Any], eps_255: float, indices: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Positions of ``indices`` that an audit attack at ``eps_255`` broke into their target class."""
    position = {int(i): j for j, i in enumerate(indices)}
    hits = np.zeros(len(indices), dtype=bool)
    for entry in results["attacks"]:
        if entry["eps_255"] != eps_255:
            continue
        for i, pred in zip(entry["samples"]["broken"], entry["samples"]["adv_pred"]):
            j = position.get(int(i))
            if j is not None and int(pred) == int(targets[j]):
                hits[j] = True
    return hits


def _targeted_eps(audit: Any, attack: Any, params: dict[str, Any], eps_255: float, indices: np.ndarray,
                  targets: np.ndarray, todo: np.ndarray,
                  settle: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Targeted PGD at one eps on the positions ``todo`` of ``indices``: per position the best
    target probability, whether any iterate and whether the last one hit, and whether it
    stopped early at its ``settle`` target probability (zeros elsewhere)."""
    config = audit.prep.config
    best = np.zeros(len(indices))
    hit = np.zeros(len(indices), dtype=bool)
    final_hit = np.zeros(len(indices), dtype=bool)
    stopped = np.zeros(len(indices), dtype=bool)
    where = np.nonzero(todo)[0]
    bs = max(int(config.batch_size), 1)
    for start in range(0, len(where), bs):
        rows = where[start : start + bs]
        chunk = indices[rows]
        x, _, _ = audit._batch(chunk)
        tgt = torch.as_tensor(targets[rows], device=x.device, dtype=torch.long)
        seed = step_seed(config.seed, "targeted-pgd", eps_255)
        chunk_params = dict(params) if settle is None else {**params, "settle_target_prob": settle[rows].tolist()}
        result, _, _, _ = attack_chunk(attack, audit.ctx, x, tgt, eps_255 / 255.0, chunk_params, seed, chunk)
        best[rows] = result.outputs["best_target_prob"].double().cpu().numpy()
        hit[rows] = result.outputs["hit"].cpu().numpy()
        final_hit[rows] = result.outputs["final_hit"].cpu().numpy()
        stopped[rows] = result.outputs["stopped"].cpu().numpy()
    return best, hit, final_hit, stopped


def settled_in_ranking(adverse: np.ndarray, is_positive: np.ndarray) -> np.ndarray:
    """Samples whose place in the positive-vs-negative ranking no attack can change any more.

    Under attack positives' scores only fall and negatives' only rise (each keeps its most
    adverse score, carried over from smaller eps). A positive already below every negative's
    score stays below all of them whatever either side finds next, and a negative above every
    positive stays above: the order of every positive-negative pair they belong to is final.
    AUROC, its DeLong interval (placement values) and the ROC curve depend on nothing else, so
    attacking such a sample again cannot move them."""
    settled = np.zeros(len(adverse), dtype=bool)
    pos, neg = adverse[is_positive], adverse[~is_positive]
    if len(pos) and len(neg):
        settled[is_positive] = pos < neg.min()
        settled[~is_positive] = neg > pos.max()
    return settled


def settle_target_prob(adverse: np.ndarray, is_positive: np.ndarray, needed: np.ndarray) -> np.ndarray | None:
    """Per sample, the target probability past which its rank is final during this eps's
    attack (see :func:`settled_in_ranking`): a positive below every negative's score so far
    (target probability above 1 - that lowest score), a negative above every positive's.
    Opponents only move away while it runs, so stopping there changes no ranking. A small
    margin keeps float32 rounding on the safe side; samples the checks need run to the end."""
    pos, neg = adverse[is_positive], adverse[~is_positive]
    if not len(pos) or not len(neg):
        return None
    margin = 1e-6
    threshold = np.where(is_positive, 1.0 - neg.min(), pos.max()) + margin
    return np.where(needed, np.inf, threshold)


def _needed_by_checks(audit: Any, results: dict[str, Any], shared: SharedTrajectories) -> dict[float, np.ndarray]:
    """Per eps, the samples whose final PGD iterate the validity checks will read from the
    targeted trajectories (their subsample, where the battery's own PGD step did not attack
    them): these are attacked in full even when settled, so the checks run nothing again."""
    config, prep = audit.prep.config, audit.prep
    none = np.zeros(audit.n, dtype=bool)
    if not getattr(config, "checks", True) or "pgd" not in prep.params or not shared.stands_in_for(prep.params["pgd"]):
        return {float(e): none for e in prep.eps_255}
    sub = none.copy()
    sub[check_subsample(audit.correct, config.check_samples, config.seed)] = True
    outcomes = step_outcomes(results, np.asarray(audit.correct, dtype=bool))
    return {float(e): sub & ~outcomes[("pgd", float(e))]["attacked"] if ("pgd", float(e)) in outcomes else sub
            for e in prep.eps_255}


def _audit_scores(results: dict[str, Any], eps_255: float, labels: np.ndarray, pos: int,
                  adverse: np.ndarray) -> np.ndarray:
    """``adverse`` moved by every audit attack at ``eps_255`` that broke a sample (its
    adversarial image lies in this eps ball too)."""
    adverse = adverse.copy()
    for entry in results["attacks"]:
        if entry["eps_255"] != eps_255:
            continue
        for i, pred, conf in zip(entry["samples"]["broken"], entry["samples"]["adv_pred"],
                                 entry["samples"]["adv_confidence"]):
            s = conf if pred == pos else 1.0 - conf
            adverse[i] = min(adverse[i], s) if labels[i] == pos else max(adverse[i], s)
    return adverse


def run_targeted(audit: Any, positive: dict[str, Any],
                 results: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[float, np.ndarray] | None]:
    """Targeted PGD in both clinical directions at every eps; for two-class models also the
    per-sample adversarial positive-class scores for AUROC under attack."""
    if positive["index"] is None:
        return None, None
    prep, config = audit.prep, audit.prep.config
    pos = int(positive["index"])
    k = prep.num_classes
    binary = k == 2
    attack = (prep.registry or get_registry()).get("attacks", TARGETED_ATTACK)
    # the audit's PGD budget when PGD ran (the same steps and step sizes), else the budget's
    params = dict(prep.params["pgd"]) if "pgd" in prep.params else attack.parameters(config.budget, audit.ctx)
    steps, restarts = int(params.get("steps", 10)), int(params.get("restarts", 0))
    labels, correct = audit.labels, audit.correct
    clean_probs = audit.clean_probs
    # Two-class: every sample towards the other class (scores for AUROC). More classes: the
    # clean-correct samples of each source class; positives aim at their likeliest other class.
    if binary:
        indices = np.arange(audit.n)
        targets = 1 - labels
    else:
        indices = np.nonzero(correct)[0]
        others = clean_probs.copy()
        others[:, pos] = -1
        targets = np.where(labels == pos, others.argmax(1), pos)[indices]
    before = audit.counter.snapshot()
    t0 = time.perf_counter()
    per_eps, scores_by_eps = [], {}
    hit_so_far = np.zeros(len(indices), dtype=bool)
    audit.shared_trajectories = shared = SharedTrajectories(audit.n, labels, k, params)  # read by the checks
    if binary:
        adverse = clean_probs[:, pos].astype(np.float64).copy()  # positives: lower is worse; negatives: higher
        needed_by_checks = _needed_by_checks(audit, results, shared)  # the battery is complete by now
    for eps_255 in prep.eps_255:
        eps = eps_255 / 255.0
        # A sample an audit attack already pushed into its target class is a hit: attacking it
        # again cannot undo that. Two-class models still attack every sample, for its score.
        hit_so_far |= _audit_hits(results, eps_255, indices, targets)
        settle = None
        if binary:  # every sample for its score, except those whose rank is final and already a hit
            adverse = _audit_scores(results, eps_255, labels, pos, adverse)
            settled = settled_in_ranking(adverse, labels == pos) & (hit_so_far | ~correct)
            needed = needed_by_checks[float(eps_255)]
            todo = ~settled | needed
            settle = settle_target_prob(adverse, labels == pos, needed)
        else:
            todo = ~hit_so_far
        best, hit, final_hit, stopped = _targeted_eps(audit, attack, params, eps_255, indices, targets, todo, settle)
        ran = todo & ~stopped  # only a trajectory run to its end stands in for the audit's PGD
        shared.record(eps_255, indices[ran], targets[ran], final_hit[ran])
        hit_so_far |= hit
        src_labels = labels[indices]
        src_correct = correct[indices]
        row = {"eps_255": eps_255, "eps": eps, "attacked": int(todo.sum())}
        for key, mask in (("positive_to_negative", src_labels == pos), ("negative_to_positive", src_labels != pos)):
            m = mask & src_correct
            row[key] = proportion(int(hit_so_far[m].sum()), int(m.sum()))
        per_eps.append(row)
        if binary:
            p_pos = np.where(labels == pos, 1.0 - best, best)
            moved = np.where(labels == pos, np.minimum(adverse, p_pos), np.maximum(adverse, p_pos))
            adverse = np.where(todo, moved, adverse)
            scores_by_eps[eps_255] = adverse.copy()
    passes = audit.counter.since(before)
    names = prep.class_names
    negative = "any other class (the likeliest)" if not binary else names[1 - pos]
    block = {
        "method": ("targeted PGD (Madry et al. 2018) ascending log p(target) in the L-inf ball, on the clean-correct "
                   "samples of the source class; a sample counts once any iterate at any eps <= this eps predicts "
                   "the target, or an audit attack at such an eps broke it into the target class (with more than "
                   "two classes those samples are not attacked again)"),
        "positive_class": names[pos], "negative_class": negative,
        "params": {"steps": steps, "restarts": restarts, "step_size_eps_fraction": params.get("step_size_eps_fraction"),
                   "step_size_255": params.get("step_size_255"), "loss": "ce (targeted)", "budget": config.budget},
        "per_eps": per_eps,
        "time_s": time.perf_counter() - t0,
        "passes": passes,
    }
    return block, (scores_by_eps if binary else None)

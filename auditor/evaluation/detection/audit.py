"""Adversarial-example detection as a deployable guard, evaluated non-adaptively and adaptively.

Detectors (:data:`auditor.evaluation.detection.DETECTORS`), all on penultimate-layer
features and fitted on clean, labelled data only: Mahalanobis (Lee et al. 2018), kernel
density + Bayesian uncertainty (Feinman et al. 2017) and local intrinsic dimensionality
(Ma et al. 2018). Each scores an image (large = suspicious) differentiably, so each gets
its own adaptive attacker: PGD through that detector's own score.

Evaluation (:func:`detection_audit`), on clean images the model classifies correctly:

* per attack and eps (the registered attacks, run as in an audit): detection AUROC of
  clean vs successful adversarial images (``auroc``; the usual protocol), clean vs every
  perturbed image (``auroc_all``), the detection rate at the threshold that flags 5% of
  clean images (``tpr_at_5fpr``) and the rate of silent errors, images both misclassified
  and not flagged (``undetected_success_rate``);
* adaptively (Carlini & Wagner, "Adversarial Examples Are Not Easily Detected", AISec
  2017; Tramer et al., NeurIPS 2020): PGD on ``CE(logits, y) - lambda * score / scale``
  (``scale``: the threshold for Mahalanobis distances, the clean spread above the median
  for z-score sums)
  for each lambda in a grid, each image keeping the first lambda (smallest first) that
  makes it misclassified and unflagged. ``evasion_rate`` is the fraction of images for
  which the attacker got a silent error; ``guarded_accuracy`` the fraction that end up
  correctly classified or flagged.

Example::

    det = MahalanobisDetector(model).fit(x_train, y_train)
    report = detection_audit(model, det, x_test, y_test, eps_255=[2, 4, 8], registry=get_registry())
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from auditor.evaluation.detection.density import KernelDensityDetector
from auditor.evaluation.detection.features import Detector
from auditor.evaluation.detection.lid import LIDDetector
from auditor.evaluation.detection.mahalanobis import MahalanobisDetector
from auditor.accounting import CountingModel, PassCounter
from auditor.datasets import open_dataset
from auditor.errors import InputError
from auditor.interfaces import AttackContext, DataOptions
from auditor.progress import Progress
from auditor.steps import attack_chunk

FPR_TARGET = 0.05
DEFAULT_ATTACKS = ("fgsm", "pgd", "cw")
DEFAULT_LAMBDAS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)  # 0 first: the attacker never does worse than plain PGD


def compute_auroc(negatives: Sequence[float] | np.ndarray, positives: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of scores where positives should score higher (ties count
    one half): the Mann-Whitney U statistic over ``len(neg) * len(pos)``. NaN when either
    side is empty."""
    neg = np.asarray(negatives, dtype=np.float64)
    pos = np.asarray(positives, dtype=np.float64)
    if neg.size == 0 or pos.size == 0:
        return float("nan")
    scores = np.concatenate([neg, pos])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[len(neg):].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (neg.size * pos.size))


# --------------------------------------------------------------------- evaluation
ADAPTIVE_ATTACK = "detector-aware-pgd"  # plugins/attacks/detector_pgd.py


def _rates(clean_scores: np.ndarray, adv_scores: np.ndarray, fooled: np.ndarray, threshold: float) -> dict[str, Any]:
    flagged = adv_scores > threshold
    return {
        "n": int(len(adv_scores)), "n_successful": int(fooled.sum()),
        "auroc": compute_auroc(clean_scores, adv_scores[fooled]),
        "auroc_all": compute_auroc(clean_scores, adv_scores),
        "tpr_at_5fpr": float(flagged[fooled].mean()) if fooled.any() else None,
        "undetected_success_rate": float((fooled & ~flagged).mean()) if len(fooled) else None,
    }


DETECTORS: dict[str, type] = {"mahalanobis": MahalanobisDetector, "kd-bu": KernelDensityDetector, "lid": LIDDetector}


def detection_audit(model: nn.Module, detector: Detector, x: torch.Tensor, y: torch.Tensor,
                    eps_255: Sequence[float], registry: Any, **options: Any) -> dict[str, Any]:
    """One detector's report (see :func:`detection_audit_many` for the options)."""
    return detection_audit_many(model, [detector], x, y, eps_255, registry, **options)[0]


def detection_audit_many(model: nn.Module, detectors: Sequence[Detector], x: torch.Tensor, y: torch.Tensor,
                         eps_255: Sequence[float], registry: Any, attacks: Sequence[str] = DEFAULT_ATTACKS,
                         budget: str = "quick", seed: int = 0, batch_size: int = 64,
                         lambdas: Sequence[float] = DEFAULT_LAMBDAS, adaptive_steps: int = 20,
                         progress: Progress | None = None) -> list[dict[str, Any]]:
    """Per detector: detection AUROC per attack and eps (one set of adversarial images,
    scored by every detector), then under that detector's adaptive attack (module docstring)."""
    progress = progress or Progress()
    model.eval()
    t_start = time.perf_counter()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    keep = (pred == y).nonzero().squeeze(1)
    if keep.numel() == 0:
        raise InputError("the model classifies none of the evaluation images correctly")
    xc, yc = x[keep], y[keep]
    states = []
    for detector in detectors:
        clean_scores = detector.score(xc, batch_size).numpy()
        states.append({"clean": clean_scores, "threshold": float(np.quantile(clean_scores, 1 - FPR_TARGET)),
                       "rows": []})
    counter = PassCounter()
    ctx = AttackContext(model=CountingModel(model, counter).eval(), device=x.device, num_classes=_num_classes(model, x),
                        input_shape=tuple(x.shape[1:]), task="classification", seed=seed, batch_size=batch_size,
                        counter=counter)
    for name in attacks:
        attack = registry.get("attacks", name)
        params = {**attack.parameters(budget, ctx), "backend": attack.default_backend}
        for eps in eps_255:
            with progress.task(f"detection: {name} eps={eps:g}/255", len(xc)) as bar:
                advs = []
                for i in range(0, len(xc), batch_size):
                    xb = xc[i : i + batch_size]
                    advs.append(attack_chunk(attack, ctx, xb, yc[i : i + batch_size], eps / 255, params, seed + i)[1])
                    bar.advance(len(xb))
            x_adv = torch.cat(advs)
            with torch.no_grad():
                fooled = torch.cat([model(x_adv[i : i + batch_size]).argmax(1) for i in range(0, len(x_adv), batch_size)]) != yc
            for detector, state in zip(detectors, states):
                state["rows"].append({"attack": name, "eps_255": eps, **_rates(
                    state["clean"], detector.score(x_adv, batch_size).numpy(), fooled.cpu().numpy(), state["threshold"])})
    shared_s = time.perf_counter() - t_start
    reports = []
    for detector, state in zip(detectors, states):
        t0 = time.perf_counter()
        adaptive = _adaptive(detector, ctx, xc, yc, state, eps_255, registry, lambdas, adaptive_steps, batch_size,
                             progress)
        reports.append({
            "detector": detector.describe(), "n_clean_correct": int(len(xc)), "n": int(len(x)),
            "fpr_target": FPR_TARGET, "threshold": state["threshold"], "budget": budget,
            "attacks": state["rows"], "adaptive": adaptive, "adaptive_time_s": time.perf_counter() - t0,
        })
    for report in reports:  # the shared attacks, plus every detector's adaptive run
        report["time_s"] = shared_s + sum(r["adaptive_time_s"] for r in reports)
    return reports


def _adaptive(detector: Detector, ctx: AttackContext, xc: torch.Tensor, yc: torch.Tensor, state: dict[str, Any],
              eps_255: Sequence[float], registry: Any, lambdas: Sequence[float], adaptive_steps: int,
              batch_size: int, progress: Progress) -> list[dict[str, Any]]:
    """The detector's own adaptive attacker at each eps: each image keeps the first lambda
    (smallest first) that leaves it misclassified and unflagged."""
    threshold = state["threshold"]
    scale = detector.attack_scale(threshold, state["clean"])
    adaptive_attack = registry.get("attacks", ADAPTIVE_ATTACK)
    ctx.extra["detector"] = detector
    rows = []
    for eps in eps_255:
        e = eps / 255
        alpha = max(e / 8, 0.25 / 255)
        evaded = np.zeros(len(xc), dtype=bool)
        best = xc.clone()
        lam_used = np.full(len(xc), np.nan)
        with progress.task(f"detection: adaptive ({detector.name}) eps={eps:g}/255", len(lambdas) * len(xc)) as bar:
            for lam in sorted(lambdas):
                todo = np.nonzero(~evaded)[0]
                for i in range(0, len(todo), batch_size):
                    idx = torch.as_tensor(todo[i : i + batch_size], device=xc.device)
                    params = {"steps": adaptive_steps, "step_size_255": alpha * 255, "lam": lam,
                              "threshold": threshold, "scale": scale}
                    # no reseeding: the attack starts from the clean image and draws nothing
                    x_adv = attack_chunk(adaptive_attack, ctx, xc[idx], yc[idx], e, params, None)[1]
                    with torch.no_grad():
                        logits, score = detector.forward(x_adv)
                    ok = ((logits.argmax(1) != yc[idx]) & (score <= threshold)).cpu().numpy()
                    best[idx] = x_adv
                    evaded[todo[i : i + batch_size][ok]] = True
                    lam_used[todo[i : i + batch_size][ok]] = lam
                bar.advance(len(xc))
        with torch.no_grad():
            fooled = torch.cat([ctx.model(best[i : i + batch_size]).argmax(1) for i in range(0, len(best), batch_size)]) != yc
        rates = _rates(state["clean"], detector.score(best, batch_size).numpy(), fooled.cpu().numpy(), threshold)
        rows.append({"eps_255": eps, **rates, "evasion_rate": float(evaded.mean()),
                     "guarded_accuracy": float(1 - evaded.mean()), "lambdas": list(lambdas),
                     "steps": adaptive_steps, "step_size_255": alpha * 255, "score_scale": scale,
                     "lambda_counts": {f"{lam:g}": int((lam_used == lam).sum()) for lam in lambdas}})
    return rows


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


# ------------------------------------------------------------------ in an audit
def detection_for_audit(audit: Any) -> dict[str, Any]:
    """``medaudit run --detector-fit DATA``: fit the detectors (``--detectors``, default all
    of :data:`DETECTORS`) on clean, labelled ``DATA``
    (same format, size and channels as the audit; ``--detector-fit-split``, seeded
    ``--detector-fit-limit``), then evaluate it on up to ``--detector-samples`` of the
    audit's clean-correct images, seeded: AUROC per attack (FGSM, PGD, CW at the audit's
    budget) and eps, and under the adaptive attack."""
    prep, config = audit.prep, audit.config
    c, h, w = prep.input_shape
    options = DataOptions(channels=c, input_size=(h, w), split=config.detector_fit_split, classes=config.classes,
                          limit=config.detector_fit_limit, seed=config.seed, task="classification",
                          follow_symlinks=config.follow_symlinks)
    with audit.progress.task("detector: loading fit data", None):
        fit_set = open_dataset(prep.registry, config.detector_fit, options, source=config.data_format)
        if len(fit_set) == 0:
            raise InputError(f"--detector-fit: no images in {config.detector_fit} (split {config.detector_fit_split!r})")
        images, labels = [], []
        for start in range(0, len(fit_set), 256):
            batch = fit_set.load(list(range(start, min(start + 256, len(fit_set)))))
            images.append(batch.images)
            labels.append(batch.targets)
    model = prep.model.module
    x_fit, y_fit = torch.cat(images).to(prep.device), torch.cat(labels).long().to(prep.device)
    if int(y_fit.max()) >= prep.num_classes or int(y_fit.min()) < 0:
        raise InputError(f"--detector-fit: labels in {config.detector_fit} fall outside the model's "
                         f"{prep.num_classes} classes")
    names = list(getattr(config, "detectors", None) or DETECTORS)
    detectors = []
    for name in names:
        with audit.progress.task(f"detector: fitting {name}", None):
            detectors.append(DETECTORS[name](model).fit(x_fit, y_fit, batch_size=config.batch_size))
    correct = np.nonzero(audit.correct)[0]
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.permutation(correct)[: config.detector_samples])
    if chosen.size == 0:
        raise InputError("--detector-fit: the model classifies none of the audit images correctly")
    x, y, _ = audit._batch(chosen)
    attacks = [a for a in DEFAULT_ATTACKS if a in prep.registry.names("attacks")]
    reports = detection_audit_many(model, detectors, x, y, eps_255=prep.eps_255, registry=prep.registry,
                                   attacks=attacks, budget=config.budget, seed=config.seed,
                                   batch_size=config.batch_size, progress=audit.progress)
    # the first detector stays at the top level (the layout of results.json before there were three)
    report = {**reports[0], "detectors": names, "other_detectors": reports[1:]}
    same_source = Path(config.detector_fit).resolve() == Path(config.data).resolve()
    overlap = len(set(fit_set.ids()) & {audit.ids[i] for i in chosen}) if same_source else 0
    report["fit"] = {"data": str(config.detector_fit), "split": config.detector_fit_split,
                     "limit": config.detector_fit_limit, "n": int(len(x_fit)), "sha256": fit_set.fingerprint(),
                     # images both fitted on and evaluated on: the AUROC is then optimistic
                     "evaluated_images_in_fit_set": overlap}
    report["sample_indices"] = chosen.tolist()
    return report

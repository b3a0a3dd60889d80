"""Universal adversarial perturbations (``medaudit run --uap``): one perturbation per eps
for a whole data set, the physical threat of a pattern on a dermatoscope lens or a screen.

The perturbation is fitted on one set of images (``--uap-fit DATA``, else a seeded half of
the audited images) and evaluated on others (the audited images, else the other half).
An image in both sets makes the numbers optimistic for the attacker; images are matched by
their decoded pixels, counted (``fit.overlap``) and the report says so loudly.

How it relates to the worst case: a UAP is one point of the per-sample threat model (the
same eps ball), so a per-sample attack that worked as well as it could would break every
image the UAP breaks. The UAP is therefore reported beside the worst case, never inside
it; ``beyond_worst_case`` counts evaluation images the UAP broke although every per-sample
attack at that eps (or a smaller one) failed on them, which means the per-sample attacks
were weaker than they should be.

Classification: fooling rate (prediction changed from the clean one, Moosavi-Dezfooli et
al.'s definition, over every evaluation image) and accuracy under the UAP, with Wilson
intervals. Segmentation: mean Dice under the UAP (bootstrap interval) beside clean Dice on
the same images, and the missed-lesion rate.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from auditor.datasets import open_dataset
from auditor.errors import InputError, UsageError
from auditor.imagery import png_base64
from auditor.interfaces import DataOptions
from auditor.numerics import IGNORE_INDEX, project
from auditor.stats import bootstrap_mean_ci, proportion_ci
from auditor.steps import attack_chunk, step_seed

ATTACK = "uap"
VISIBILITY_NOTE = ("shown as 0.5 + 0.5 x delta / eps: mid-grey is no change, black and white are -eps and +eps "
                   "(scaled up for visibility; the true perturbation is invisible at these budgets)")


def _pixel_hashes(x: torch.Tensor) -> list[str]:
    return [hashlib.sha256(img.detach().cpu().numpy().tobytes()).hexdigest() for img in x]


def _targets(audit: Any, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and the targets an attack sees (segmentation: IGNORE_INDEX outside the ROI)."""
    if audit.prep.task == "segmentation":
        x, y, roi, _ = audit._batch(indices)
        return x, (y if roi is None else y.masked_fill(~roi, IGNORE_INDEX))
    x, y, _ = audit._batch(indices)
    return x, y


def _fit_from_data(audit: Any) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    prep, config = audit.prep, audit.config
    c, h, w = prep.input_shape
    options = DataOptions(channels=c, input_size=(h, w), split=config.uap_fit_split, classes=config.classes,
                          limit=config.uap_fit_limit, seed=config.seed, task=prep.task,
                          follow_symlinks=config.follow_symlinks)
    fit_set = open_dataset(prep.registry, config.uap_fit, options, source=config.data_format)
    if len(fit_set) == 0:
        raise InputError(f"--uap-fit: no images in {config.uap_fit} (split {config.uap_fit_split!r})")
    batch = fit_set.load(list(range(len(fit_set))))
    y = batch.targets
    if prep.task == "classification" and (int(y.max()) >= prep.num_classes or int(y.min()) < 0):
        raise InputError(f"--uap-fit: labels in {config.uap_fit} fall outside the model's {prep.num_classes} classes")
    if prep.task == "segmentation" and batch.roi is not None:
        y = y.masked_fill(~batch.roi.bool(), IGNORE_INDEX)
    fit = {"source": "data", "data": str(config.uap_fit), "split": config.uap_fit_split,
           "limit": config.uap_fit_limit, "sha256": fit_set.fingerprint()}
    return batch.images.to(prep.device), y.to(prep.device), fit


def split_fit_eval(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded half of ``range(n)`` to fit on (the smaller half) and the rest to evaluate on."""
    if n < 4:
        raise UsageError(f"--uap without --uap-fit splits the audited images in two; {n} images are too few "
                         "(give --uap-fit DATA or audit at least 4 images)")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def _fit_and_eval(audit: Any) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, dict[str, Any]]:
    config = audit.config
    if config.uap_fit is not None:
        x_fit, y_fit, fit = _fit_from_data(audit)
        eval_idx = np.arange(audit.n)
    else:
        fit_idx, eval_idx = split_fit_eval(audit.n, config.seed)
        x_fit, y_fit = _targets(audit, fit_idx)
        fit = {"source": "split of the audited data", "data": str(config.data), "split": config.split,
               "seed": config.seed, "indices": fit_idx.tolist()}
    eval_hashes = set()
    for chunk in audit._chunks(eval_idx):
        eval_hashes.update(_pixel_hashes(_targets(audit, chunk)[0]))
    fit["n"] = int(len(x_fit))
    fit["overlap"] = sum(h in eval_hashes for h in _pixel_hashes(x_fit))
    return x_fit, y_fit, eval_idx, fit


def _per_sample_broken(results: dict[str, Any], eps_255: float, n: int) -> np.ndarray:
    broken = np.zeros(n, dtype=bool)
    for entry in results.get("attacks") or []:
        if entry["eps_255"] <= eps_255:
            broken[entry["samples"]["broken"]] = True
    return broken


def _evaluate_classification(audit: Any, results: dict[str, Any], eval_idx: np.ndarray, delta: torch.Tensor,
                             eps: float, eps_255: float) -> dict[str, Any]:
    adv_pred = np.zeros(len(eval_idx), dtype=np.int64)
    for start in range(0, len(eval_idx), audit.batch_size):
        chunk = eval_idx[start : start + audit.batch_size]
        x, _ = _targets(audit, chunk)
        adv_pred[start : start + len(chunk)] = audit._predict(project(x + delta, x, eps)).argmax(1).cpu().numpy()
    labels, clean = audit.labels[eval_idx], audit.clean_pred[eval_idx]
    fooled = adv_pred != clean
    correct = adv_pred == labels
    n = len(eval_idx)
    robust_per_sample = audit.correct & ~_per_sample_broken(results, eps_255, audit.n)
    beyond = int((robust_per_sample[eval_idx] & ~correct).sum())
    return {
        "fooling_rate": float(fooled.mean()), "n_fooled": int(fooled.sum()),
        "fooling_rate_ci95": list(proportion_ci(int(fooled.sum()), n)),
        "robust_accuracy": float(correct.mean()), "n_robust": int(correct.sum()),
        "ci95": list(proportion_ci(int(correct.sum()), n)), "ci_method": "wilson",
        "beyond_worst_case": beyond, "adv_pred": adv_pred.tolist(),
    }


def _evaluate_segmentation(audit: Any, eval_idx: np.ndarray, delta: torch.Tensor, eps: float) -> dict[str, Any]:
    dice = np.full(len(eval_idx), np.nan)
    missed = np.full(len(eval_idx), np.nan)
    for start in range(0, len(eval_idx), audit.batch_size):
        chunk = eval_idx[start : start + audit.batch_size]
        x, y, roi, _ = audit._batch(chunk)
        values = audit._evaluate(audit._predict(project(x + delta, x, eps)), y, roi)
        dice[start : start + len(chunk)] = values["dice"]
        missed[start : start + len(chunk)] = values["missed"]
    clean = np.asarray(audit.clean_values["dice"])[eval_idx]
    ci = bootstrap_mean_ci(dice, seed=audit.config.seed)
    with_lesion = np.isfinite(missed)
    return {
        "dice": float(np.nanmean(dice)), "dice_ci95": ci["ci95"], "ci_method": "bootstrap",
        "dice_drop": float(np.nanmean(clean - dice)),
        "missed_rate": float(np.nanmean(missed)) if with_lesion.any() else None,
        "n_missed": int(np.nansum(missed)), "n_with_lesion": int(with_lesion.sum()),
        "dice_per_image": [round(float(v), 6) if np.isfinite(v) else None for v in dice],
    }


def _clean_block(audit: Any, eval_idx: np.ndarray) -> dict[str, Any]:
    if audit.prep.task == "segmentation":
        clean = np.asarray(audit.clean_values["dice"])[eval_idx]
        return {"dice": float(np.nanmean(clean)), "dice_ci95": bootstrap_mean_ci(clean, seed=audit.config.seed)["ci95"]}
    k = int(audit.correct[eval_idx].sum())
    return {"accuracy": k / len(eval_idx), "n_correct": k, "ci95": list(proportion_ci(k, len(eval_idx)))}


def uap_for_audit(audit: Any, results: dict[str, Any]) -> dict[str, Any]:
    """Fit one UAP per eps of the audit and evaluate it (see the module docstring)."""
    prep, config = audit.prep, audit.config
    attack = prep.registry.get("attacks", ATTACK)
    params = {**attack.parameters(config.budget, audit.ctx), "backend": config.backends.get(ATTACK, attack.default_backend)}
    if params["backend"] not in attack.backends:
        raise UsageError(f"attack '{ATTACK}' has no '{params['backend']}' backend ({', '.join(attack.backends)})")
    with audit.progress.task("universal perturbation: fit data", None):
        x_fit, y_fit, eval_idx, fit = _fit_and_eval(audit)
    per_eps = []
    with audit.progress.task("universal perturbation", len(prep.eps_255)) as task:
        for eps_255 in prep.eps_255:
            eps = eps_255 / 255.0
            seed = step_seed(config.seed, ATTACK, eps_255, 0)
            before = audit.counter.snapshot()
            result, x_adv, _, seconds = attack_chunk(attack, audit.ctx, x_fit, y_fit, eps, dict(params), seed)
            delta = result.outputs["delta"][:1].to(x_fit.dtype)  # an out-of-memory split fits one per half
            entry = {"eps": eps, "eps_255": eps_255, "attack_time_s": seconds, "passes": audit.counter.since(before),
                     "linf": float(delta.abs().max()), "perturbation_png": png_base64(0.5 + 0.5 * delta[0] / eps),
                     "example_png": png_base64(x_adv[0])}
            if prep.task == "segmentation":
                entry.update(_evaluate_segmentation(audit, eval_idx, delta, eps))
            else:
                with torch.no_grad():
                    fit_pred = audit._predict(x_adv).argmax(1).cpu().numpy()
                    fit_clean = audit._predict(x_fit).argmax(1).cpu().numpy()
                entry["fit_fooling_rate"] = float((fit_pred != fit_clean).mean())
                entry.update(_evaluate_classification(audit, results, eval_idx, delta, eps, eps_255))
            per_eps.append(entry)
            task.advance(1)
    return {
        "attack": ATTACK, "title": attack.title, "reference": attack.reference, "task": prep.task,
        "params": {k: v for k, v in params.items() if k != "seed"}, "seed": config.seed,
        "fit": fit, "eval": {"n": int(len(eval_idx)), "indices": eval_idx.tolist(),
                             "data": str(config.data), "split": config.split},
        "clean": _clean_block(audit, eval_idx), "per_eps": per_eps,
        "threat": "one perturbation per eps for every image; reported beside the per-sample worst case, not in it",
        "visibility_note": VISIBILITY_NOTE,
    }

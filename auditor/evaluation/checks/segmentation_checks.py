"""Validity checks for a finished segmentation audit, held to the classification standard.

The checks of :mod:`auditor.evaluation.checks` that have a meaning for a mask, with Dice in
place of robust accuracy (a mask degrades by degrees, so "broken" becomes "Dice fell"):

1. logits        the model outputs logits, not sigmoid / softmax probabilities
2. gradients     input gradients of the BCE and Dice objectives are finite and non-zero
3. determinism   repeated forward passes give the same logits and masks
4. monotone      each attack's Dice (and the worst case) never rises with eps
5. iterative     PGD leaves a Dice at most FGSM's (same loss) at every eps
7. large-eps     PGD at 64/255 drives Dice far below the clean Dice
8. convergence   PGD with twice the steps lowers Dice little below the audit's worst case
9. noise         uniform noise of the same L-inf size lowers Dice much less than the attacks

The black-box and class-count checks have no segmentation counterpart here. Checks that
run the model do so on a seeded subsample of images (segmentation images are large: at
most ``SEG_DEFAULT_SAMPLES``, and at most ``--check-samples``) through the audit's counting
model and the one step routine (:func:`auditor.steps.attack_chunk`) with registered seg
attacks, so their passes are counted in ``results["checks"]["cost"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditor.evaluation.checks.base import (DETERMINISM_REPEATS, DETERMINISM_RTOL, LARGE_EPS_255, NOISE_RATIO,
                                           CheckBase, check_result, gradient_verdict, seeded_subset,
                                           summarise_checks)
from auditor.numerics import IGNORE_INDEX, objective_gradient, project
from auditor.steps import attack_chunk

SEG_DEFAULT_SAMPLES = 8
DICE_TOLERANCE = 0.02  # checks 4 and 5: a mean Dice may rise by this much (float noise of a small subsample)
LARGE_EPS_STEPS = 10  # check 7: ten steps of eps/4 cross the 64/255 ball more than twice
LARGE_EPS_KEEP_PASS, LARGE_EPS_KEEP_FAIL = 0.2, 0.5  # check 7: Dice left, as a fraction of the clean Dice
CONVERGENCE_WARN, CONVERGENCE_FAIL = 0.02, 0.05  # check 8: mean Dice a stronger PGD finds below the audit's
SEG_NOISE_DRAWS = 2  # check 9: each draw is a forward pass of a whole (large) image
ATTACK_LOSS = "dice"  # the check's own attacks use the Dice loss (the stronger one in the survey's Table 5)


def check_dice_monotone(sequences: dict[str, list[tuple[float, float | None]]], judged: set[str],
                        tolerance: float = DICE_TOLERANCE) -> dict[str, Any]:
    """Check 4 on (eps_255, mean Dice) sequences ascending in eps: a judged sequence whose
    Dice rises by more than ``tolerance`` between consecutive budgets fails."""
    rises = []
    for label, seq in sequences.items():
        pairs = [(e, d) for e, d in seq if d is not None]
        for (e0, d0), (e1, d1) in zip(pairs, pairs[1:]):
            if d1 > d0:
                rises.append({"sequence": label, "from_eps_255": e0, "to_eps_255": e1, "rise": d1 - d0,
                              "judged": label in judged})
    numbers = {"sequences": {k: [{"eps_255": e, "dice": d} for e, d in v] for k, v in sequences.items()},
               "rises": rises, "tolerance_dice": tolerance}
    name = "Dice never increases with eps"
    threshold = f"a judged mean Dice rising by more than {tolerance:g} between consecutive eps fails"
    bad = [r for r in rises if r["judged"] and r["rise"] > tolerance]
    if bad:
        r = bad[0]
        return check_result(4, "monotone", name, "fail",
                            f"{r['sequence']} Dice rises by {r['rise']:.3f} from eps {r['from_eps_255']:g} to "
                            f"{r['to_eps_255']:g}/255: a larger budget must not help the model; the attack is not "
                            "converging", numbers, tolerance=threshold)
    small = sum(1 for r in rises if r["judged"])
    note = f" ({small} rise(s) within tolerance)" if small else ""
    return check_result(4, "monotone", name, "pass",
                        f"Dice does not increase with eps in {len(judged)} sequence(s){note}", numbers,
                        tolerance=threshold)


class SegmentationChecks(CheckBase):
    """Runs the eight segmentation checks on a finished
    :class:`auditor.engine.segmentation.SegmentationAudit` (uses its ``prep``, ``ctx``,
    ``counter``, ``batch_size``, ``clean_values``, ``_batch`` and ``_evaluate``)."""

    def __init__(self, audit: Any, results: dict[str, Any], samples: int = SEG_DEFAULT_SAMPLES) -> None:
        super().__init__(audit, results, samples)
        self.clean_dice = np.asarray(audit.clean_values["dice"], dtype=float)[self.sub]
        self._dice: dict[tuple[str, float], np.ndarray] = {}

    def subsample(self, samples: int) -> np.ndarray:
        """Every image is a candidate (a mask is not right or wrong), at most SEG_DEFAULT_SAMPLES."""
        return seeded_subset(np.arange(self.audit.n), min(SEG_DEFAULT_SAMPLES, int(samples)), self.config.seed)

    # -------------------------------------------------------------- helpers
    def _chunks(self, indices: np.ndarray) -> list[np.ndarray]:
        bs = max(int(self.audit.batch_size), 1)
        return [indices[i : i + bs] for i in range(0, len(indices), bs)]

    def _seg_data(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Images, attack labels (IGNORE_INDEX outside the ROI), masks and ROI."""
        x, y, roi, _ = self.audit._batch(indices)
        y_attack = torch.where(roi, y, torch.full_like(y, IGNORE_INDEX)) if roi is not None else y.clone()
        return x, y_attack, y, roi

    def _dice_of(self, x: torch.Tensor, y: torch.Tensor, roi: torch.Tensor | None) -> np.ndarray:
        with torch.no_grad():
            return self.audit._evaluate(self.model(x), y, roi)["dice"]

    def _audit_dice(self, attack: str | None, eps_255: float) -> np.ndarray | None:
        """Per-image Dice of the subsample from the audit: an attack's entry, or the worst case."""
        rows = (self.results.get("worst_case") or []) if attack is None else [
            a for a in self.results["attacks"] if a["attack"] == attack]
        row = next((r for r in rows if r["eps_255"] == eps_255), None)
        if row is None:
            return None
        values = np.array([np.nan if v is None else v for v in row["samples"]["dice"]], dtype=float)
        return values[self.sub]

    def pgd_params(self, steps_factor: int = 1) -> tuple[str, dict[str, Any]]:
        name = f"seg-pgd-{ATTACK_LOSS}"
        params = self.attack_params(name)
        params["steps"] = int(params["steps"]) * steps_factor
        return name, params

    def run_attack(self, name: str, eps_255: float, params: dict[str, Any] | None = None,  # type: ignore[override]
                   tag: str | None = None, indices: np.ndarray | None = None) -> np.ndarray:
        """Per-image Dice of the subsample after the attack, with the engine's rules."""
        key = (tag or name, float(eps_255))
        if params is None and key in self._dice:
            return self._dice[key]
        attack = self.registry.get("attacks", name)
        run_params = dict(params or self.attack_params(name))
        dice = []
        for chunk in self._chunks(self.sub):
            x, y_attack, y, roi = self._seg_data(chunk)
            seed = self._seed(tag or name, eps_255)
            _, x_adv, _, _ = attack_chunk(attack, self.ctx, x, y_attack, eps_255 / 255.0, run_params, seed, chunk)
            dice.append(self._dice_of(x_adv, y, roi))
        values = np.concatenate(dice) if dice else np.zeros(0)
        if params is None:
            self._dice[key] = values
        return values

    # --------------------------------------------------------------- checks
    def check_logits(self) -> dict[str, Any]:
        name = "Model outputs logits, not probabilities"
        with torch.no_grad():
            outs = [self.model(self._seg_data(c)[0]).double() for c in self._chunks(self.sub)]
        lowest, highest = min(float(o.min()) for o in outs), max(float(o.max()) for o in outs)
        in_unit = lowest >= 0 and highest <= 1
        softmax = in_unit and outs[0].shape[1] > 1 and all(bool(((o.sum(1) - 1).abs() <= 1e-3).all()) for o in outs)
        kind = "softmax" if softmax else "sigmoid" if in_unit else None
        numbers = {"n": len(self.sub), "output_min": lowest, "output_max": highest, "data_kind": kind,
                   "channels": int(outs[0].shape[1])}
        threshold = "every output value in [0, 1] (and channels summing to 1)"
        if kind:
            return check_result(1, "logits", name, "fail",
                                f"outputs are {kind} probabilities (all in [0, 1]): saturated probabilities give "
                                "attacks vanishing gradients and the threshold at logit 0 is wrong; audit the model "
                                "without its final activation", numbers, threshold=threshold)
        return check_result(1, "logits", name, "pass", f"outputs range {lowest:.3g} to {highest:.3g}: logits",
                            numbers, threshold=threshold)

    def check_gradients(self) -> dict[str, Any]:
        name = "Input gradients are informative"
        zero = {"bce": 0, "dice": 0}
        nonfinite = 0
        norms: list[float] = []
        for chunk in self._chunks(self.sub):
            x, y_attack, _, _ = self._seg_data(chunk)
            for loss in zero:
                grad, _, _ = objective_gradient(self.model, x, y_attack, loss)
                flat = grad.flatten(1)
                finite = torch.isfinite(flat).all(1)
                zero[loss] += int((finite & (flat.abs().amax(1) == 0)).sum())
                nonfinite += int((~finite).sum())
                if loss == "bce":
                    norms.extend(flat[finite].abs().mean(1).double().cpu().tolist())
        n = len(self.sub)
        numbers = {"n": n, "zero_bce": zero["bce"], "zero_dice": zero["dice"], "nonfinite": nonfinite,
                   "mean_abs_gradient_median": float(np.median(norms)) if norms else None}
        return gradient_verdict(
            name, n, {"BCE": zero["bce"], "Dice": zero["dice"]}, nonfinite, numbers, unit="images",
            masked_by="e.g. quantisation or a hard threshold inside the model", finds="masks", warn_hint="",
            passed=f"all {n} images have finite, non-zero gradients of the BCE and Dice objectives")

    def check_determinism(self) -> dict[str, Any]:
        name = "Repeated forward passes agree"
        diff, changed, scale = 0.0, 0, 1.0
        for chunk in self._chunks(self.sub):
            x = self._seg_data(chunk)[0]
            with torch.no_grad():
                outs = torch.stack([self.model(x).double() for _ in range(DETERMINISM_REPEATS)])
            diff = max(diff, float((outs - outs[0]).abs().max()))
            scale = max(scale, float(outs.abs().max()))
            masks = outs[:, :, 0] >= 0 if outs.shape[2] == 1 else outs.argmax(2)
            changed += int((masks != masks[0]).flatten(2).any(2).any(0).sum())
        tol = DETERMINISM_RTOL * scale
        numbers = {"n": len(self.sub), "repeats": DETERMINISM_REPEATS, "max_abs_logit_diff": diff,
                   "tolerance": tol, "masks_changed": changed}
        threshold = f"logits agree within {DETERMINISM_RTOL:g} x max(1, |logit|) and no mask changes"
        if changed or diff > tol:
            return check_result(3, "determinism", name, "fail",
                                f"the model is randomised: logits differ by up to {diff:.3g} and {changed} of "
                                f"{len(self.sub)} masks change between identical passes; gradient attacks need EoT, "
                                "which medaudit does not do, so robustness is overstated", numbers,
                                threshold=threshold)
        return check_result(3, "determinism", name, "pass",
                            f"{DETERMINISM_REPEATS} passes over {len(self.sub)} images agree (max logit difference "
                            f"{diff:.2g})", numbers, threshold=threshold)

    def check_monotone(self) -> dict[str, Any]:
        sequences: dict[str, list[tuple[float, float | None]]] = {
            "worst_case (audit, by construction)": [(w["eps_255"], w["dice"]) for w in self.results["worst_case"]]}
        judged = {"worst_case (audit, by construction)"}
        for entry in self.results["attacks"]:
            label = f"{entry['attack']} (audit, every image)"
            sequences.setdefault(label, []).append((entry["eps_255"], entry["dice"]))
            if not entry["attack"].startswith("seg-fgsm"):  # one step of size eps may overshoot: not judged
                judged.add(label)
        return check_dice_monotone({k: sorted(v) for k, v in sequences.items()}, judged)

    def check_iterative(self) -> dict[str, Any]:
        name = "PGD is at least as strong as FGSM"
        entries = {(a["attack"], a["eps_255"]): a for a in self.results["attacks"]}
        losses = [loss for loss in ("dice", "bce")
                  if all((f"seg-{kind}-{loss}", e) in entries for kind in ("pgd", "fgsm") for e in self.eps_255)]
        rows = []
        if losses:
            loss = losses[0]
            source = f"audit: seg-pgd-{loss} and seg-fgsm-{loss} on every image"
            for e in self.eps_255:
                rows.append((e, entries[(f"seg-pgd-{loss}", e)]["dice"], entries[(f"seg-fgsm-{loss}", e)]["dice"]))
        else:
            source = (f"check subsample of {len(self.sub)} images: seg-pgd-{ATTACK_LOSS} and seg-fgsm-{ATTACK_LOSS} "
                      "run by the check (the audit did not run both)")
            for e in self.eps_255:
                rows.append((e, _nanmean(self.run_attack(f"seg-pgd-{ATTACK_LOSS}", e)),
                             _nanmean(self.run_attack(f"seg-fgsm-{ATTACK_LOSS}", e))))
        numbers = {"source": source, "tolerance_dice": DICE_TOLERANCE,
                   "per_eps": [{"eps_255": e, "pgd_dice": p, "fgsm_dice": f} for e, p, f in rows]}
        threshold = f"PGD's mean Dice <= FGSM's + {DICE_TOLERANCE:g} at every eps"
        bad = [(e, p, f) for e, p, f in rows if p is not None and f is not None and p > f + DICE_TOLERANCE]
        if bad:
            e, p, f = bad[0]
            return check_result(5, "iterative", name, "fail",
                                f"at eps {e:g}/255 PGD leaves Dice {p:.3f} but one FGSM step {f:.3f}: the iterative "
                                "attack is not working (step size, loss or masked gradients)", numbers,
                                tolerance=threshold)
        return check_result(5, "iterative", name, "pass",
                            "PGD Dice <= FGSM's at every eps (" + ", ".join(
                                f"{e:g}: {_fmt(p)} vs {_fmt(f)}" for e, p, f in rows) + ")", numbers,
                            tolerance=threshold)

    def check_large_eps(self) -> dict[str, Any]:
        name = "A very large budget breaks the segmentation"
        eps_255 = min(255.0, max(LARGE_EPS_255, 4 * self.eps_max))
        attack, params = self.pgd_params()
        params.update({"steps": LARGE_EPS_STEPS, "step_size_eps_fraction": 0.25, "step_size_255": None, "starts": 1})
        dice = _nanmean(self.run_attack(attack, eps_255, params, tag=f"{attack}-large"))
        clean = _nanmean(self.clean_dice)
        kept = dice / clean if dice is not None and clean else 0.0
        numbers = {"eps_255": eps_255, "attack": attack, "steps": LARGE_EPS_STEPS, "step_size": "eps/4",
                   "n": len(self.sub), "clean_dice": clean, "dice": dice, "dice_kept_fraction": kept}
        threshold = (f"pass when Dice falls to at most {LARGE_EPS_KEEP_PASS:.0%} of the clean Dice, fail above "
                     f"{LARGE_EPS_KEEP_FAIL:.0%}")
        if clean is None or clean < 0.1:
            status, message = "warn", (f"the clean Dice is only {_fmt(clean)}: a large budget has nothing to break, "
                                       "so this check cannot tell a working attack from a broken one")
        elif kept > LARGE_EPS_KEEP_FAIL:
            status, message = "fail", (
                f"PGD at eps {eps_255:g}/255 keeps Dice at {_fmt(dice)} ({kept:.0%} of the clean {_fmt(clean)}): at "
                "this budget the image can be replaced almost entirely, so the attack or its gradients are broken")
        elif kept > LARGE_EPS_KEEP_PASS:
            status, message = "warn", (f"PGD at eps {eps_255:g}/255 still keeps {kept:.0%} of the clean Dice "
                                       f"({_fmt(dice)}); expected about 0")
        else:
            status, message = "pass", (f"PGD at eps {eps_255:g}/255 drives Dice on {len(self.sub)} images from "
                                       f"{_fmt(clean)} to {_fmt(dice)}")
        return check_result(7, "large-eps", name, status, message, numbers, threshold=threshold)

    def check_convergence(self) -> dict[str, Any]:
        name = "PGD has converged"
        attack, strong = self.pgd_params(steps_factor=2)
        base = {e: self._audit_dice(None, e) for e in self.eps_255}
        left = [e for e in self.eps_255 if base[e] is not None and (_nanmean(base[e]) or 0.0) > 0.05]
        threshold = (f"PGD with twice the steps may lower the subsample's mean Dice below the audit's worst case by "
                     f"at most {CONVERGENCE_WARN:g} (warn) / {CONVERGENCE_FAIL:g} (fail)")
        if not left:
            return check_result(8, "convergence", name, "pass",
                                "the audit's worst case already leaves Dice near 0 at every eps",
                                {"n": len(self.sub)}, tolerance=threshold)
        eps = max(left)  # the largest budget with Dice left to take says most about the step budget
        stronger = self.run_attack(attack, eps, strong, tag=f"{attack}-x2")
        gain = _nanmean(np.maximum(base[eps] - stronger, 0.0)) or 0.0
        numbers = {"eps_255": eps, "attack": attack, "steps": strong["steps"], "n": len(self.sub),
                   "audit_worst_dice": _nanmean(base[eps]), "stronger_dice": _nanmean(stronger),
                   "mean_dice_gain": gain}
        status = "fail" if gain > CONVERGENCE_FAIL else "warn" if gain > CONVERGENCE_WARN else "pass"
        message = (f"{strong['steps']}-step PGD lowers Dice by {gain:.3f} below the audit's worst case at eps {eps:g}/255"
                   + ("" if status == "pass" else ": the attack budget is too small; rerun with --budget thorough"))
        return check_result(8, "convergence", name, status, message, numbers, tolerance=threshold)

    def check_noise(self) -> dict[str, Any]:
        name = "Random noise is much weaker than the attack"
        eps = self.eps_max / 255.0
        noise = []
        for chunk in self._chunks(self.sub):
            x, _, y, roi = self._seg_data(chunk)
            streams = self._streams("noise", self.eps_max, chunk, x.device)
            worst = np.full(len(chunk), np.inf)
            for _ in range(SEG_NOISE_DRAWS):
                drawn = project(x + (streams.rand(x.shape[1:]).to(x.dtype) * 2 - 1) * eps, x, eps)
                worst = np.fmin(worst, self._dice_of(drawn, y, roi))
            noise.append(worst)
        noise_dice = np.concatenate(noise) if noise else np.zeros(0)
        attack_dice = self._audit_dice(None, self.eps_max)
        clean = _nanmean(self.clean_dice) or 0.0
        noise_drop = clean - (_nanmean(noise_dice) or 0.0)
        attack_drop = clean - (_nanmean(attack_dice) if attack_dice is not None else clean)
        numbers = {"eps_255": self.eps_max, "n": len(self.sub), "draws": SEG_NOISE_DRAWS, "clean_dice": clean,
                   "noise_dice_drop": noise_drop, "attack_dice_drop": attack_drop, "attack": "audit worst case"}
        threshold = (f"fail when noise lowers Dice at least as much as the attacks; warn when more than "
                     f"{NOISE_RATIO:.0%} as much")
        if noise_drop > DICE_TOLERANCE and noise_drop >= attack_drop:
            return check_result(9, "noise", name, "fail",
                                f"uniform noise of L-inf {self.eps_max:g}/255 lowers Dice by {noise_drop:.3f}, the "
                                f"attacks only by {attack_drop:.3f}: the attacks are not following useful gradients",
                                numbers, threshold=threshold)
        if noise_drop > DICE_TOLERANCE and noise_drop > NOISE_RATIO * attack_drop:
            return check_result(9, "noise", name, "warn",
                                f"uniform noise lowers Dice by {noise_drop:.3f}, not much less than the attacks' "
                                f"{attack_drop:.3f}", numbers, threshold=threshold)
        return check_result(9, "noise", name, "pass",
                            f"uniform noise of L-inf {self.eps_max:g}/255 lowers Dice by {noise_drop:.3f}, the "
                            f"attacks by {attack_drop:.3f}", numbers, threshold=threshold)

    # ------------------------------------------------------------------ run
    def run(self, progress: Any = None) -> dict[str, Any]:
        checks = [self.check_logits, self.check_gradients, self.check_determinism, self.check_monotone,
                  self.check_iterative, self.check_large_eps, self.check_convergence, self.check_noise]
        subsample = {"n": int(len(self.sub)), "of_images": int(self.audit.n), "unit": "images",
                     "indices": [int(i) for i in self.sub], "seed": self.config.seed}
        if not len(self.sub):
            return summarise_checks([check_result(i, k, k, "skipped", "no images to check") for k, i in CHECK_IDS.items()],
                                    subsample=subsample)
        return self.run_items([(CHECK_IDS[k], k, c) for k, c in zip(CHECK_IDS, checks)], progress, subsample)


CHECK_IDS = {"logits": 1, "gradients": 2, "determinism": 3, "monotone": 4, "iterative": 5, "large-eps": 7,
             "convergence": 8, "noise": 9}
SEG_CHECK_COUNT = len(CHECK_IDS)


def _nanmean(values: np.ndarray | None) -> float | None:
    if values is None:
        return None
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run_segmentation_checks(audit: Any, results: dict[str, Any], samples: int = SEG_DEFAULT_SAMPLES,
                            progress: Any = None) -> dict[str, Any]:
    """Run the segmentation validity checks on a finished segmentation audit."""
    return SegmentationChecks(audit, results, samples).run(progress)


def check_units(audit: Any, samples: int) -> float:
    """Planned work of the checks (images x forward+backward passes), for the audit's ETA:
    gradients 2, logits and determinism 4 forwards, the large-eps PGD, twice the audit's
    PGD steps, noise draws, and possibly a PGD and an FGSM the audit did not run."""
    steps = int(audit.prep.params.get(f"seg-pgd-{ATTACK_LOSS}", {}).get("steps") or 10)
    return planned_check_units(audit.n, samples, steps)


def planned_check_units(images: int, samples: int, pgd_steps: int) -> float:
    n = min(images, SEG_DEFAULT_SAMPLES, max(int(samples), 0))
    return n * (2 + (4 + SEG_NOISE_DRAWS) / 3 + LARGE_EPS_STEPS + 2 * pgd_steps)

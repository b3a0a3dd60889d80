"""Checks of the model itself: 1 logits, 2 gradients, 3 determinism, 11 degenerate."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from auditor.evaluation.checks.base import (DETERMINISM_REPEATS, DETERMINISM_RTOL, DEFAULT_SAMPLES,
                                           CheckBase, check_result, gradient_verdict)
from auditor.evaluation.checks.pure import check_degenerate
from auditor.numerics import margin_loss


class ModelChecks(CheckBase):
    """Checks 1 to 3 and 11; mixed into :class:`auditor.evaluation.checks.ValidityChecks`."""

    def check_logits(self) -> dict[str, Any]:
        name = "Model outputs logits, not probabilities"
        probe = self.prep.probe
        indices = self.sub if len(self.sub) else np.arange(min(self.audit.n, DEFAULT_SAMPLES))
        with torch.no_grad():
            out = torch.cat([self.model(self._data(c)[0]).double() for c in self._chunks(indices)])
        in_unit = bool(((out >= 0) & (out <= 1)).all())
        sums = out.sum(1)
        softmax_like = in_unit and out.shape[1] > 1 and bool(((sums - 1).abs() <= 1e-3).all())
        sigmoid_like = in_unit and not softmax_like
        log_probs = bool((out <= 1e-6).all()) and bool((torch.logsumexp(out, 1).abs() <= 1e-3).all())
        data_kind = "softmax" if softmax_like else "sigmoid" if sigmoid_like else "log-softmax" if log_probs else None
        numbers = {"probe_kind": getattr(probe, "probability_kind", None), "data_kind": data_kind,
                   "output_min": float(out.min()), "output_max": float(out.max()),
                   "row_sum_mean": float(sums.mean()), "n": len(indices),
                   "allow_probabilities": bool(self.config.allow_probabilities)}
        if data_kind in ("softmax", "sigmoid") or getattr(probe, "looks_like_probabilities", False):
            kind = data_kind or numbers["probe_kind"]
            return check_result(1, "logits", name, "fail",
                                f"outputs are {kind} probabilities (all in [0, 1]"
                                f"{', rows sum to 1' if kind == 'softmax' else ''}): saturated probabilities give "
                                "attacks vanishing gradients, so robustness is overstated; audit the model without "
                                "its final layer", numbers, threshold="outputs all in [0, 1] (and rows summing to 1)")
        note = " (log-probabilities, fine for gradients)" if data_kind == "log-softmax" else ""
        return check_result(1, "logits", name, "pass",
                            f"outputs range {numbers['output_min']:.3g} to {numbers['output_max']:.3g}: logits{note}",
                            numbers, threshold="outputs all in [0, 1] (and rows summing to 1)")

    def check_gradients(self) -> dict[str, Any]:
        name = "Input gradients are informative"
        skipped = self._skip_if_empty(2, "gradients", name)
        if skipped:
            return skipped
        zero_ce = zero_margin = nonfinite = 0
        norms = []
        for chunk in self._chunks(self.sub):
            x, y = self._data(chunk)
            xg = x.detach().clone().requires_grad_(True)
            logits = self.model(xg)  # one forward serves both losses' backward passes
            for loss in ("ce", "margin"):
                value = F.cross_entropy(logits, y, reduction="sum") if loss == "ce" else margin_loss(logits, y).sum()
                (grad,) = torch.autograd.grad(value, xg, retain_graph=loss == "ce")
                flat = grad.flatten(1)
                finite = torch.isfinite(flat).all(1)
                zero = finite & (flat.abs().amax(1) == 0)
                if loss == "ce":
                    zero_ce += int(zero.sum())
                    nonfinite += int((~finite).sum())
                    norms.extend(flat[finite].abs().mean(1).double().cpu().tolist())
                else:
                    zero_margin += int(zero.sum())
                    nonfinite += int((~finite).sum())
        n = len(self.sub)
        numbers = {"n": n, "zero_ce": zero_ce, "zero_margin": zero_margin, "nonfinite": nonfinite,
                   "zero_ce_fraction": zero_ce / n, "zero_margin_fraction": zero_margin / n,
                   "mean_abs_gradient_median": float(np.median(norms)) if norms else None}
        return gradient_verdict(
            name, n, {"cross-entropy": zero_ce, "margin": zero_margin}, nonfinite, numbers, unit="samples",
            masked_by="e.g. quantisation or a non-differentiable step", finds="examples",
            warn_hint=": saturated or masked there; margin-loss attacks help",
            passed=f"all {n} samples have finite, non-zero gradients of the cross-entropy and margin losses")

    def check_determinism(self) -> dict[str, Any]:
        name = "Repeated forward passes agree"
        indices = self.sub if len(self.sub) else np.arange(min(self.audit.n, DEFAULT_SAMPLES))
        outs = []
        with torch.no_grad():
            for _ in range(DETERMINISM_REPEATS):
                outs.append(torch.cat([self.model(self._data(c)[0]).double() for c in self._chunks(indices)]))
        stack = torch.stack(outs)
        diff = float((stack - stack[0]).abs().max())
        scale = max(1.0, float(stack.abs().max()))
        preds = stack.argmax(2)
        changed = int((preds != preds[0]).any(0).sum())
        vs_clean = int((preds[0].cpu().numpy() != self.audit.clean_pred[indices]).sum())
        training = sorted({type(m).__name__ for m in self.model.modules()
                           if m.training and isinstance(m, (torch.nn.Dropout, torch.nn.modules.batchnorm._BatchNorm))})
        tol = DETERMINISM_RTOL * scale
        numbers = {"n": len(indices), "repeats": DETERMINISM_REPEATS, "max_abs_logit_diff": diff,
                   "tolerance": tol, "predictions_changed": changed, "differ_from_clean_pass": vs_clean,
                   "modules_in_training_mode": training}
        threshold = f"logits agree within {DETERMINISM_RTOL:g} x max(1, |logit|) and no prediction changes"
        if changed or vs_clean or diff > tol:
            return check_result(3, "determinism", name, "fail",
                                f"the model is randomised: logits differ by up to {diff:.3g} and "
                                f"{changed + vs_clean} of "
                                f"{len(indices)} predictions change between identical passes; gradient attacks need "
                                "EoT (averaging over the randomness, Athalye et al. 2018), which medaudit does not do, "
                                "so robustness is overstated", numbers, threshold=threshold)
        return check_result(3, "determinism", name, "pass",
                            f"{DETERMINISM_REPEATS} passes over {len(indices)} samples agree (max logit difference "
                            f"{diff:.2g})", numbers, threshold=threshold)

    def check_degenerate(self) -> dict[str, Any]:
        """Check 11 on the clean pass the audit already made (no model calls)."""
        return check_degenerate(self.audit.labels, self.audit.clean_pred, self.audit.clean_probs,
                                self.prep.num_classes)

"""Detector-aware PGD: misclassify *and* look clean to an adversarial-example detector.

The adaptive attacker of Carlini & Wagner, "Adversarial Examples Are Not Easily Detected:
Bypassing Ten Detection Methods", AISec 2017: L-inf PGD from the clean image ascending
``CE(logits, y) - lam * score / scale``, where the detector scores an input (higher =
more adversarial), ``threshold`` is its operating point and ``scale`` (default: the
threshold) the score's unit, so each detector's own score drives its own attacker.
White-box against model and detector. Internal (``public = False``): the detection audit runs it, with the detector in
``ctx.extra["detector"]`` (an object whose ``forward(x)`` returns ``(logits, score)``).

Parameters: ``steps``, ``step_size_255`` (default max(eps/8, 0.25/255)), ``lam``, ``threshold``,
``scale``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import project


class DetectorAwarePGD(Attack):
    name = "detector-aware-pgd"
    title = "detector-aware PGD (adaptive)"
    threat_model = "white-box"
    cost = 40
    backends = ("native",)
    default_backend = "native"
    reference = "Carlini & Wagner, AISec 2017"
    public = False

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        return {"steps": 20, "step_size_255": None, "lam": 1.0, "threshold": 1.0, "scale": None}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        detector = ctx.extra["detector"]
        # default step: an eighth of the ball, at least a quarter grey level
        alpha = params["step_size_255"] / 255.0 if params.get("step_size_255") else max(eps / 8, 0.25 / 255)
        lam = float(params["lam"])
        scale = float(params.get("scale") or params["threshold"])
        x_adv = x.clone()
        for _ in range(int(params["steps"])):
            x_adv = x_adv.detach().requires_grad_(True)
            logits, score = detector.forward(x_adv)
            objective = F.cross_entropy(logits, y, reduction="sum") - lam * (score / scale).sum()
            (grad,) = torch.autograd.grad(objective, x_adv)
            x_adv = project(x_adv.detach() + alpha * grad.sign(), x, eps)
        return AttackResult(x_adv.detach())

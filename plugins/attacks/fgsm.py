"""FGSM: the fast gradient sign method.

Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015.
White-box, L-inf, untargeted, one step of size eps along the sign of the input gradient
of the cross-entropy loss. No parameters depend on the budget.

Backends: ``native`` (default; one batched forward and backward pass in torch) and
``art`` (``art.attacks.evasion.FastGradientMethod``, which round-trips numpy per batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditor.art_adapter import art_classifier, from_numpy, one_hot, to_numpy
from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import check_budget, input_gradient, project


class FGSM(Attack):
    name = "fgsm"
    title = "FGSM"
    threat_model = "white-box"
    cost = 10
    default_battery = True
    backends = ("native", "art")
    default_backend = "native"
    reference = "Goodfellow et al., ICLR 2015"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "steps": 1, "step_size": "eps", "loss": "ce", "targeted": False}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        if params["backend"] == "art":
            from art.attacks.evasion import FastGradientMethod

            attack = FastGradientMethod(
                art_classifier(ctx), norm=np.inf, eps=eps, eps_step=eps, targeted=False,
                num_random_init=0, batch_size=ctx.batch_size, minimal=False,
            )
            x_adv = from_numpy(attack.generate(to_numpy(x), y=one_hot(y, ctx.num_classes)), x)
            return AttackResult(project(x_adv, x, eps))
        grad, _ = input_gradient(ctx.model, x, y, "ce")
        return AttackResult(project(x + eps * grad.sign(), x, eps))

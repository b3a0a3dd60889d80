"""FGSM for segmentation models: one signed-gradient step of the segmentation loss.

Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015;
applied to segmentation with BCE and Dice losses as in Ozbulak et al., "Impact of
Adversarial Examples on Deep Learning Models for Biomedical Image Segmentation", MICCAI 2019.

White-box, L-inf, untargeted: ``x + eps * sign(grad loss)``, clipped to [0, 1]. Registered
twice, ``seg-fgsm-bce`` and ``seg-fgsm-dice`` (see :mod:`plugins.attacks.seg_losses` for
the losses; ``bce`` is the softmax cross-entropy for K-class outputs). No parameter
depends on the budget. Example::

    medaudit run unet.pt --data ph2.csv --task segmentation --attacks seg-fgsm-dice --eps 2,8
"""

from __future__ import annotations

from typing import Any

import torch

from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import check_budget, project
from plugins.attacks.seg_losses import LOSS_TITLES, objective_gradient


class SegFGSM(Attack):
    threat_model = "white-box"
    cost = 10
    default_battery = True
    tasks = ("segmentation",)
    backends = ("native",)
    default_backend = "native"
    reference = "Goodfellow et al., ICLR 2015"

    def __init__(self, loss: str = "bce") -> None:
        if loss not in ("bce", "dice"):
            raise ValueError(f"seg-fgsm loss must be bce or dice, not {loss!r}")
        self.loss = loss
        self.name = f"seg-fgsm-{loss}"
        self.title = f"FGSM ({LOSS_TITLES[loss]} loss)"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "loss": self.loss, "steps": 1, "step_size": "eps", "targeted": False}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        grad, _, _ = objective_gradient(ctx.model, x, y, params["loss"])
        return AttackResult(project(x + eps * grad.sign(), x, eps))

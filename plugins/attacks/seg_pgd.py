"""PGD for segmentation models, with a BCE or a soft-Dice loss.

Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018;
the BCE and Dice adversarial losses follow the survey's Table 5 (a U-Net's lesion Dice
falls from 0.875 to 0.14 at eps 8/255, the Dice loss being the stronger).

White-box, L-inf, untargeted, logits-based losses restricted to the ROI (see
:mod:`plugins.attacks.seg_losses`). Registered twice: ``seg-pgd-bce`` and ``seg-pgd-dice``.

Budgets (steps / step size / starts):

* quick: 10 steps of eps/4, one start at the clean image;
* standard: 20 steps of 1/255, one start at the clean image (the survey's setting);
* thorough: 50 steps of max(1/255, eps/10), 3 starts (the clean image, then two uniform
  random starts in the eps ball); each image keeps the start with the highest loss.

Example::

    medaudit run unet.pt --data drive/test --task segmentation --attacks seg-pgd-bce,seg-pgd-dice
"""

from __future__ import annotations

from typing import Any

import torch

from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import check_budget, sample_streams, step_size
from plugins.attacks.seg_losses import LOSS_TITLES, PGD_BUDGET, seg_pgd


class SegPGD(Attack):
    threat_model = "white-box"
    cost = 20
    default_battery = True
    tasks = ("segmentation",)
    backends = ("native",)
    default_backend = "native"
    reference = "Madry et al., ICLR 2018"

    def __init__(self, loss: str = "bce") -> None:
        if loss not in ("bce", "dice"):
            raise ValueError(f"seg-pgd loss must be bce or dice, not {loss!r}")
        self.loss = loss
        self.name = f"seg-pgd-{loss}"
        self.title = f"PGD ({LOSS_TITLES[loss]} loss)"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "loss": self.loss, "targeted": False, **PGD_BUDGET[budget]}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        x_adv, details = seg_pgd(
            ctx.model, x, y, eps, step_size(params, eps), params["steps"], params["starts"], params["loss"],
            sample_streams(params, len(x), x.device), on_step=ctx.extra.get("on_iteration"),
        )
        return AttackResult(x_adv, details=details if params["starts"] > 1 else {})

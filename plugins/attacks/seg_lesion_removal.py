"""Lesion removal: a targeted PGD that drives the predicted mask to empty.

The clinically critical failure of a lesion segmentation model is a missed lesion, so
this attack does not merely degrade the mask: it minimises the BCE between the logits
and an all-background mask inside the ROI (the softmax CE towards class 0 for K-class
outputs), i.e. pushes every foreground logit down. Targeted PGD (Madry et al., ICLR 2018;
Kurakin et al., "Adversarial examples in the physical world", 2017, for the targeted
form), white-box, L-inf, same step schedule as ``seg-pgd``. An image stops being updated
as soon as nothing inside its ROI is predicted as foreground (``details.emptied_early``
counts them). Success shows in the ``missed_rate`` of the entry. Example::

    medaudit run unet.pt --data ph2.csv --task segmentation --attacks seg-lesion-removal --eps 4
"""

from __future__ import annotations

from typing import Any

import torch

from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import check_budget, sample_streams, step_size
from plugins.attacks.seg_losses import PGD_BUDGET, seg_pgd


class SegLesionRemoval(Attack):
    name = "seg-lesion-removal"
    title = "Lesion removal (targeted PGD to an empty mask)"
    threat_model = "white-box"
    cost = 25
    default_battery = True
    tasks = ("segmentation",)
    backends = ("native",)
    default_backend = "native"
    reference = "Madry et al., ICLR 2018 (targeted)"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "loss": "background", "targeted": True, "target": "empty mask",
                **PGD_BUDGET[budget]}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        x_adv, details = seg_pgd(
            ctx.model, x, y, eps, step_size(params, eps), params["steps"], params["starts"], "background",
            sample_streams(params, len(x), x.device), stop_when_empty=True, on_step=ctx.extra.get("on_iteration"),
        )
        return AttackResult(x_adv, details=details)

"""UAP: one universal L-inf perturbation for a whole set of images.

Moosavi-Dezfooli et al., "Universal Adversarial Perturbations", CVPR 2017 (the ``art``
backend: ART's ``UniversalPerturbation``, its per-image loop with FGSM as the inner
attacker, classification only). The ``native`` backend (default) is the batched form used
since Shafahi et al., "Universal Adversarial Training", AAAI 2020: signed-gradient ascent
on one shared delta over mini-batches of the fit images, projected onto the eps ball after
every step. Loss: cross-entropy (classification), the BCE segmentation objective
(segmentation); a sample's loss is capped (``loss_cap``) so that images already fooled
stop pulling the shared delta towards themselves.

White-box, L-inf, untargeted. The engine's own attack (``--uap``), not an ``--attacks``
value: ``run`` fits the perturbation on the images it is given and returns those images
plus it; ``outputs["delta"]`` is the (1, C, H, W) perturbation to apply to other images.

Budgets (passes over the fit images / step):

* quick: 5 epochs of eps/4;
* standard: 10 epochs of eps/8;
* thorough: 20 epochs of eps/10.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from auditor.art_adapter import art_classifier, from_numpy, one_hot, seed_everything, to_numpy
from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import check_budget, ce_loss, generator, project, seg_objective

BUDGET = {
    "quick": {"epochs": 5, "step_size_eps_fraction": 0.25},
    "standard": {"epochs": 10, "step_size_eps_fraction": 0.125},
    "thorough": {"epochs": 20, "step_size_eps_fraction": 0.1},
}
LOSS_CAP = 4.0  # CE of ~4 nats: the sample is already firmly misclassified


def _objective(ctx: AttackContext, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if ctx.task == "segmentation":
        return seg_objective(logits, y, "bce")
    return ce_loss(logits, y).clamp(max=LOSS_CAP)


def uap_native(ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, epochs: int,
               batch_size: int, seed: int) -> torch.Tensor:
    """The shared delta (1, C, H, W): ``epochs`` shuffled passes over ``x`` in mini-batches,
    one signed-gradient step of the summed loss per mini-batch. Starts at zero."""
    delta = torch.zeros((1, *x.shape[1:]), dtype=x.dtype, device=x.device)
    gen = generator(seed, torch.device("cpu"))
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen).to(x.device)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            d = delta.detach().requires_grad_(True)
            x_adv = torch.clamp(x[idx] + d, 0.0, 1.0)
            (grad,) = torch.autograd.grad(_objective(ctx, ctx.model(x_adv), y[idx]).sum(), d)
            delta = torch.clamp(delta + alpha * grad.sign(), -eps, eps)
            on_iteration = ctx.extra.get("on_iteration")
            if on_iteration is not None:
                on_iteration()
    return delta.detach()


class UAP(Attack):
    name = "uap"
    title = "Universal adversarial perturbation"
    threat_model = "white-box"
    tasks = ("classification", "segmentation")
    cost = 30
    default_battery = False
    public = False  # one perturbation for a whole split: run by the engine (--uap), not per sample
    backends = ("native", "art")
    default_backend = "native"
    reference = "Moosavi-Dezfooli et al., CVPR 2017; batched: Shafahi et al., AAAI 2020"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "loss": "bce" if ctx.task == "segmentation" else "ce", "loss_cap": LOSS_CAP,
                "targeted": False, "universal": True, **BUDGET[budget]}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        alpha = params["step_size_eps_fraction"] * eps
        if params["backend"] == "art":
            delta = self._art(ctx, x, y, eps, alpha, params)
        else:
            delta = uap_native(ctx, x, y, eps, alpha, params["epochs"], ctx.batch_size, params["seed"])
        return AttackResult(project(x + delta, x, eps), details={}, outputs={"delta": delta})

    @staticmethod
    def _art(ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float,
             params: dict[str, Any]) -> torch.Tensor:
        if ctx.task != "classification":
            raise ValueError("the art backend of uap serves classification only; use the native one")
        from art.attacks.evasion import UniversalPerturbation

        seed_everything(params["seed"])
        random.seed(params["seed"])  # ART shuffles the images with Python's random
        attack = UniversalPerturbation(
            art_classifier(ctx), attacker="fgsm", attacker_params={"eps": alpha, "norm": np.inf},
            delta=0.0, max_iter=params["epochs"], eps=eps, norm=np.inf, batch_size=ctx.batch_size, verbose=False,
        )
        attack.generate(to_numpy(x), y=one_hot(y, ctx.num_classes))
        return torch.clamp(from_numpy(attack.noise, x), -eps, eps)

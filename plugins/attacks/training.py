"""The inner maximisations of adversarial training, as attacks ``medaudit harden`` runs.

* ``pgd-training``: L-inf PGD maximising the training loss (Madry et al., ICLR 2018):
  ``ce`` for classification, ``bce`` or ``dice`` (medaudit's segmentation objectives) for
  segmentation, from a uniform random start in the ball (``random_start``) or from x.
* ``trades-training``: TRADES (Zhang et al., ICML 2019): KL(p(x) || p(x')) over the
  ball, from x plus 0.001 Gaussian noise.

Parameters: ``steps``, ``step_size`` (absolute, in [0,1] units; else
``step_size_eps_fraction`` x eps), ``loss`` and
``random_start`` (PGD). Randomness comes from ``params["generator"]`` when the caller
passes one (a training loop draws every batch from one generator), else from a generator
seeded with ``params["seed"]``. Internal (``public = False``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import generator, project, seg_objective


def _generator(params: dict[str, Any], device: torch.device) -> torch.Generator:
    gen = params.get("generator")
    return gen if gen is not None else generator(int(params.get("seed") or 0), device)


def _alpha(params: dict[str, Any], eps: float) -> float:
    return float(params["step_size"]) if params.get("step_size") else params["step_size_eps_fraction"] * eps


class TrainingPGD(Attack):
    name = "pgd-training"
    title = "PGD (adversarial training)"
    cost = 20
    tasks = ("classification", "segmentation")
    backends = ("native",)
    default_backend = "native"
    reference = "Madry et al., ICLR 2018"
    public = False

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        return {"steps": 10, "step_size": None, "step_size_eps_fraction": 0.25, "loss": "ce", "random_start": True}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        alpha, loss = _alpha(params, eps), params["loss"]
        if params.get("random_start", True):
            noise = (torch.rand(x.shape, generator=_generator(params, x.device), device=x.device) * 2 - 1) * eps
            x_adv = project(x + noise, x, eps)
        else:
            x_adv = x.clone()
        for _ in range(int(params["steps"])):
            x_adv = x_adv.detach().requires_grad_(True)
            logits = ctx.model(x_adv)
            value = F.cross_entropy(logits, y, reduction="sum") if loss == "ce" else seg_objective(logits, y, loss).sum()
            (grad,) = torch.autograd.grad(value, x_adv)
            x_adv = project(x_adv.detach() + alpha * grad.sign(), x, eps)
        return AttackResult(x_adv.detach())


class TradesTraining(Attack):
    name = "trades-training"
    title = "TRADES inner maximisation"
    cost = 20
    backends = ("native",)
    default_backend = "native"
    reference = "Zhang et al., ICML 2019"
    public = False

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        return {"steps": 10, "step_size": None, "step_size_eps_fraction": 0.25}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        alpha = _alpha(params, eps)
        with torch.no_grad():
            p_clean = F.softmax(ctx.model(x), dim=1)
        start = x + 0.001 * torch.randn(x.shape, generator=_generator(params, x.device), device=x.device)
        x_adv = project(start, x, eps)
        for _ in range(int(params["steps"])):
            x_adv = x_adv.detach().requires_grad_(True)
            kl = F.kl_div(F.log_softmax(ctx.model(x_adv), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = project(x_adv.detach() + alpha * grad.sign(), x, eps)
        return AttackResult(x_adv.detach())

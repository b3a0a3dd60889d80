"""Carlini-Wagner attacks, evaluated in the L-inf ball.

Carlini and Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017.
White-box, untargeted, margin ("f6") loss max_{j != y} z_j - z_y.

``cw`` (L-inf). Backends:

* ``native`` (default): projected sign-gradient ascent on the CW margin loss inside the
  eps ball (the "CW-L-inf" of Madry et al. and of the AutoAttack paper), batched in torch.
  Budgets: quick 10 steps of eps/4; standard 30 steps of max(eps/10, 0.5/255);
  thorough 100 steps of eps/10 plus one random restart.
* ``art``: ``CarliniLInfMethod`` (a minimum-norm search, one numpy round trip per step);
  its result is projected onto the eps ball, so it counts only when it fits the budget.
  max_iter 10 / 30 / 100, learning rate 0.01.

``cw-l2`` (ART ``CarliniL2Method``, minimum L2 norm; result projected onto the L-inf eps
ball). Not in the default battery: it is an L2 attack audited under an L-inf budget.
"""

from __future__ import annotations

from typing import Any

import torch

from auditor.art_adapter import art_classifier, from_numpy, one_hot, seed_everything, to_numpy
from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import check_budget, project, sample_streams, step_size
from plugins.attacks.pgd import pgd_native

BUDGET = {
    "quick": {"steps": 10, "step_size_eps_fraction": 0.25, "step_size_255": None, "restarts": 0},
    "standard": {"steps": 30, "step_size_eps_fraction": 0.1, "step_size_255": 0.5, "restarts": 0},
    "thorough": {"steps": 100, "step_size_eps_fraction": 0.1, "step_size_255": None, "restarts": 1},
}


class CW(Attack):
    name = "cw"
    title = "Carlini-Wagner (L-inf)"
    threat_model = "white-box"
    cost = 30
    default_battery = True
    backends = ("native", "art")
    default_backend = "native"
    reference = "Carlini & Wagner, IEEE S&P 2017"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "loss": "cw-margin", "confidence": 0.0, "targeted": False,
                "art_learning_rate": 0.01, **BUDGET[budget]}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        if params["backend"] == "art":
            from art.attacks.evasion import CarliniLInfMethod

            seed_everything(params["seed"])
            attack = CarliniLInfMethod(
                art_classifier(ctx), confidence=params["confidence"], targeted=False,
                learning_rate=params["art_learning_rate"], max_iter=params["steps"],
                batch_size=ctx.batch_size, verbose=False,
            )
            x_adv = from_numpy(attack.generate(to_numpy(x), y=one_hot(y, ctx.num_classes)), x)
            return AttackResult(project(x_adv, x, eps))
        alpha = step_size(params, eps)
        x_adv = pgd_native(ctx.model, x, y, eps, alpha, params["steps"], params["restarts"], "cw",
                           sample_streams(params, len(x), x.device))
        return AttackResult(x_adv)


class CWL2(Attack):
    name = "cw-l2"
    title = "Carlini-Wagner (L2, projected to L-inf)"
    threat_model = "white-box"
    cost = 60
    backends = ("art",)
    default_backend = "art"
    reference = "Carlini & Wagner, IEEE S&P 2017"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        iters = {"quick": 10, "standard": 50, "thorough": 100}[budget]
        searches = {"quick": 1, "standard": 3, "thorough": 5}[budget]
        return {"norm": "l2-projected-to-linf", "max_iter": iters, "binary_search_steps": searches,
                "confidence": 0.0, "learning_rate": 0.01, "initial_const": 0.01, "targeted": False}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        from art.attacks.evasion import CarliniL2Method

        seed_everything(params["seed"])
        attack = CarliniL2Method(
            art_classifier(ctx), confidence=params["confidence"], targeted=False,
            learning_rate=params["learning_rate"], binary_search_steps=params["binary_search_steps"],
            max_iter=params["max_iter"], initial_const=params["initial_const"],
            batch_size=ctx.batch_size, verbose=False,
        )
        x_adv = from_numpy(attack.generate(to_numpy(x), y=one_hot(y, ctx.num_classes)), x)
        return AttackResult(project(x_adv, x, eps))

"""Square Attack: score-based black-box random search.

Andriushchenko et al., "Square Attack: a query-efficient black-box adversarial attack via
random search", ECCV 2020. Black-box (needs only the model's scores), L-inf, untargeted,
margin loss, p_init 0.8, one restart. Query budget (max iterations, one query per
iteration per still-robust sample): quick 100, standard 1000, thorough 5000.

Backend: ``art`` (``art.attacks.evasion.SquareAttack``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditor.art_adapter import from_numpy, one_hot, seed_everything, to_numpy
from auditor.interfaces import Attack, AttackContext, AttackResult
from plugins.attacks._common import check_budget, project

QUERIES = {"quick": 100, "standard": 1000, "thorough": 5000}


def run_art_square(ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, queries: int,
                   p_init: float, restarts: int, seed: int) -> torch.Tensor:
    from art.attacks.evasion import SquareAttack

    seed_everything(seed)
    attack = SquareAttack(
        ctx.art_classifier(), norm=np.inf, max_iter=queries, eps=eps, p_init=p_init,
        nb_restarts=restarts, batch_size=ctx.batch_size, verbose=False,
    )
    x_adv = from_numpy(attack.generate(to_numpy(x), y=one_hot(y, ctx.num_classes)), x)
    return project(x_adv, x, eps)


class Square(Attack):
    name = "square"
    title = "Square Attack"
    threat_model = "black-box"
    cost = 70
    backends = ("art",)
    default_backend = "art"
    reference = "Andriushchenko et al., ECCV 2020"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "loss": "margin", "queries": QUERIES[budget], "p_init": 0.8, "restarts": 1,
                "targeted": False}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        x_adv = run_art_square(ctx, x, y, eps, params["queries"], params["p_init"], params["restarts"], params["seed"])
        return AttackResult(x_adv)

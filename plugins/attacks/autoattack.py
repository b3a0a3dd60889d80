"""AutoAttack, composed explicitly from ART components.

Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020. The reference "standard" AutoAttack runs APGD-CE,
APGD-T (targeted DLR), FAB-T and Square (5,000 queries). ART's ``AutoAttack`` class runs a
different battery by default, so medaudit composes its own and records exactly which
sub-attacks ran in ``details.sub_attacks``:

1. APGD-CE (``AutoProjectedGradientDescent``, cross-entropy, initial step 2*eps);
2. APGD-DLR (difference-of-logits-ratio loss) - only with 3 or more classes: DLR is
   undefined for two classes (ART crashes), so two-class models skip it;
3. Square (L-inf, margin loss, p_init 0.8).

Each sub-attack attacks only the samples the previous ones did not break (worst case per
sample). FAB-T is not run (ART's FAB is not the reference implementation): stated in the
results. Budgets: APGD iterations / random restarts / Square queries:
quick 10 / 1 / 100; standard 100 / 1 / 1000; thorough 100 / 5 / 5000.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditor.art_adapter import from_numpy, one_hot, seed_everything, to_numpy
from auditor.interfaces import Attack, AttackContext, AttackResult
from plugins.attacks._common import check_budget, project
from plugins.attacks.square import run_art_square

BUDGET = {
    "quick": {"apgd_steps": 10, "apgd_restarts": 1, "square_queries": 100},
    "standard": {"apgd_steps": 100, "apgd_restarts": 1, "square_queries": 1000},
    "thorough": {"apgd_steps": 100, "apgd_restarts": 5, "square_queries": 5000},
}


def sub_attacks_for(num_classes: int) -> list[str]:
    return ["apgd-ce", "apgd-dlr", "square"] if num_classes >= 3 else ["apgd-ce", "square"]


class AutoAttack(Attack):
    name = "autoattack"
    title = "AutoAttack (APGD-CE, APGD-DLR, Square)"
    threat_model = "white-box"
    cost = 50
    backends = ("art",)
    default_backend = "art"
    reference = "Croce & Hein, ICML 2020"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        subs = sub_attacks_for(ctx.num_classes)
        return {
            "norm": "linf", "targeted": False, **BUDGET[budget], "apgd_initial_step": "2*eps",
            "sub_attacks": subs,
            "not_run": ["apgd-t", "fab-t"] + ([] if "apgd-dlr" in subs else ["apgd-dlr (needs >= 3 classes)"]),
        }

    def _apgd(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any],
              loss_type: str) -> torch.Tensor:
        from art.attacks.evasion import AutoProjectedGradientDescent

        attack = AutoProjectedGradientDescent(
            ctx.art_classifier(), norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=params["apgd_steps"],
            targeted=False, nb_random_init=params["apgd_restarts"], batch_size=ctx.batch_size,
            loss_type=loss_type, verbose=False,
        )
        return from_numpy(attack.generate(to_numpy(x), y=one_hot(y, ctx.num_classes)), x)

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        x_adv = x.clone()
        robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
        broken_by: dict[str, int] = {}
        for i, sub in enumerate(params["sub_attacks"]):
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                broken_by[sub] = 0
                continue
            seed_everything(params["seed"] + i)
            if sub == "square":
                cand = run_art_square(ctx, x[idx], y[idx], eps, params["square_queries"], 0.8, 1, params["seed"] + i)
            else:
                loss_type = "cross_entropy" if sub == "apgd-ce" else "difference_logits_ratio"
                cand = project(self._apgd(ctx, x[idx], y[idx], eps, params, loss_type), x[idx], eps)
            with torch.no_grad():
                fooled = ctx.model(cand).argmax(1) != y[idx]
            x_adv[idx[fooled]] = cand[fooled]
            robust[idx[fooled]] = False
            broken_by[sub] = int(fooled.sum())
        return AttackResult(x_adv, details={"sub_attacks_ran": list(params["sub_attacks"]), "broken_by": broken_by})

"""PGD: projected gradient descent in the L-inf ball.

Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
White-box, L-inf, untargeted, cross-entropy loss.

Budgets (steps / step size / random restarts):

* quick: 10 steps of eps/4, no random start;
* standard: 20 steps of 1/255, no random start (the survey's setting);
* thorough: 50 steps of max(1/255, eps/10), 5 random restarts.

Backends: ``art`` (default; ``ProjectedGradientDescentPyTorch`` already runs in torch
and is close to the cost of the passes it needs) and ``native``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditor.art_adapter import art_classifier, from_numpy, one_hot, seed_everything, to_numpy
from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import SampleStreams, check_budget, input_gradient, project, sample_streams, step_size

BUDGET = {
    "quick": {"steps": 10, "step_size_eps_fraction": 0.25, "step_size_255": None, "restarts": 0},
    "standard": {"steps": 20, "step_size_eps_fraction": None, "step_size_255": 1.0, "restarts": 0},
    "thorough": {"steps": 50, "step_size_eps_fraction": 0.1, "step_size_255": 1.0, "restarts": 5},
}


def pgd_native(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float,
    steps: int, restarts: int, loss: str, seed: int | SampleStreams,
) -> torch.Tensor:
    """Batched PGD; with restarts, keeps per sample the first restart that misclassifies.

    The step loop stays on the device: no ``.item()``, ``.cpu()`` or Python branching on
    tensor values, so on a GPU the steps queue without host round trips. Between restarts
    one success check selects the samples still to attack (a single pass per restart,
    skipped after the last one: the engine predicts the result anyway). Random starts come
    from each sample's own stream (``seed``: the streams, or an int to derive them)."""
    best = x.clone()
    remaining = torch.ones(len(x), dtype=torch.bool, device=x.device)
    streams = SampleStreams.of(seed, len(x), x.device)
    rounds = max(restarts, 1)
    for restart in range(rounds):
        idx = remaining.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x0, y0 = x[idx], y[idx]
        if restarts > 0:
            noise = (streams.subset(idx).rand(x0.shape[1:]).to(x.dtype) * 2 - 1) * eps
            x_adv = project(x0 + noise, x0, eps)
        else:
            x_adv = x0.clone()
        for _ in range(steps):
            grad, _ = input_gradient(model, x_adv, y0, loss)
            x_adv = project(x_adv + alpha * grad.sign(), x0, eps)
        best[idx] = x_adv
        if restart + 1 < rounds:
            with torch.no_grad():
                fooled = model(x_adv).argmax(1) != y0
            remaining[idx[fooled]] = False
    return best


class PGD(Attack):
    name = "pgd"
    title = "PGD"
    threat_model = "white-box"
    cost = 20
    default_battery = True
    backends = ("art", "native")
    default_backend = "art"
    reference = "Madry et al., ICLR 2018"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "loss": "ce", "targeted": False, **BUDGET[budget]}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        alpha = step_size(params, eps)
        if params["backend"] == "art":
            from art.attacks.evasion import ProjectedGradientDescentPyTorch

            seed_everything(params["seed"])
            attack = ProjectedGradientDescentPyTorch(
                art_classifier(ctx), norm=np.inf, eps=eps, eps_step=alpha, max_iter=params["steps"],
                targeted=False, num_random_init=params["restarts"], batch_size=ctx.batch_size,
                random_eps=False, verbose=False,
            )
            x_adv = from_numpy(attack.generate(to_numpy(x), y=one_hot(y, ctx.num_classes)), x)
            return AttackResult(project(x_adv, x, eps))
        x_adv = pgd_native(ctx.model, x, y, eps, alpha, params["steps"], params["restarts"], "ce",
                           sample_streams(params, len(x), x.device))
        return AttackResult(x_adv)

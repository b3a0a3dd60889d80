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

Backends (each covers APGD and Square):

* ``native`` (default): Square as :mod:`plugins.attacks.square`'s native backend; APGD as in the reference implementation (step size 2*eps,
  momentum 0.75, checkpoints at 22% of the iterations shrinking by 3% to at least 6%,
  step halving on oscillation or stagnation, restart from the best point), batched in
  torch: one forward and one backward pass per iteration, nothing else.
* ``art``: ART's ``SquareAttack`` and ``AutoProjectedGradientDescent``, which adds two forward passes per iteration
  (``compute_loss`` and ``predict``) and a numpy round trip per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditor.art_adapter import art_classifier, from_numpy, one_hot, seed_everything, to_numpy
from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import SampleStreams, check_budget, loss_and_gradient, project, sample_streams
from plugins.attacks.square import run_art_square, square_native

BUDGET = {
    "quick": {"apgd_steps": 10, "apgd_restarts": 1, "square_queries": 100},
    "standard": {"apgd_steps": 100, "apgd_restarts": 1, "square_queries": 1000},
    "thorough": {"apgd_steps": 100, "apgd_restarts": 5, "square_queries": 5000},
}


def sub_attacks_for(num_classes: int) -> list[str]:
    return ["apgd-ce", "apgd-dlr", "square"] if num_classes >= 3 else ["apgd-ce", "square"]


def apgd_checkpoints(steps: int) -> list[int]:
    """Iterations (0-based) after which APGD checks progress: the reference schedule."""
    interval = max(int(0.22 * steps), 1)
    shrink, minimum = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    points, at = [], interval - 1
    while at < steps:
        points.append(at)
        interval = max(interval - shrink, minimum)
        at += interval
    return points


def apgd_native(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                restarts: int, loss: str, seed: int | SampleStreams, rho: float = 0.75) -> torch.Tensor:
    """Untargeted L-inf APGD (Croce & Hein 2020, Algorithm 1). Returns, per sample, the
    first misclassified iterate found, else the highest-loss one. No host round trips in
    the step loop; one success check per restart selects the samples left to attack.
    Random starts come from each sample's own stream."""
    streams = SampleStreams.of(seed, len(x), x.device)
    best_out = x.clone()
    remaining = torch.ones(len(x), dtype=torch.bool, device=x.device)
    checkpoints = set(apgd_checkpoints(steps))
    for restart in range(max(restarts, 1)):
        idx = remaining.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x0, y0 = x[idx], y[idx]
        n = len(idx)
        view = (n,) + (1,) * (x.dim() - 1)
        noise = streams.subset(idx).rand(x0.shape[1:]).to(x.dtype) * 2 - 1
        scale = noise.flatten(1).abs().amax(1).clamp_min(1e-12).view(view)
        x_adv = project(x0 + eps * noise / scale, x0, eps)
        step = torch.full(view, 2 * eps, device=x.device)
        grad, logits, values = loss_and_gradient(model, x_adv, y0, loss)
        fooled = logits.argmax(1) != y0
        found = x_adv.clone()
        best_x, best_grad, best_loss = x_adv.clone(), grad.clone(), values.clone()
        last_check_loss = best_loss.clone()
        reduced_last_check = torch.ones(n, dtype=torch.bool, device=x.device)
        increases = torch.zeros(n, device=x.device)
        previous_loss, x_previous = values, x_adv
        since_check = 0
        for i in range(steps):
            momentum = 0.75 if i > 0 else 1.0
            z = project(x_adv + step * grad.sign(), x0, eps)
            x_next = project(x_adv + momentum * (z - x_adv) + (1 - momentum) * (x_adv - x_previous), x0, eps)
            x_previous, x_adv = x_adv, x_next
            grad, logits, values = loss_and_gradient(model, x_adv, y0, loss)
            newly = (logits.argmax(1) != y0) & ~fooled
            found = torch.where(newly.view(view), x_adv, found)
            fooled |= newly
            increases += (values > previous_loss).float()
            previous_loss = values
            better = values > best_loss
            best_x = torch.where(better.view(view), x_adv, best_x)
            best_grad = torch.where(better.view(view), grad, best_grad)
            best_loss = torch.where(better, values, best_loss)
            since_check += 1
            if i in checkpoints:
                oscillating = increases <= since_check * rho
                stalled = ~reduced_last_check & (last_check_loss >= best_loss)
                halve = oscillating | stalled
                reduced_last_check = halve
                last_check_loss = best_loss.clone()
                step = torch.where(halve.view(view), step / 2, step)
                x_adv = torch.where(halve.view(view), best_x, x_adv)
                grad = torch.where(halve.view(view), best_grad, grad)
                increases.zero_()
                since_check = 0
        best_out[idx] = torch.where(fooled.view(view), found, best_x)
        remaining[idx[fooled]] = False
    return best_out


class AutoAttack(Attack):
    name = "autoattack"
    title = "AutoAttack (APGD-CE, APGD-DLR, Square)"
    threat_model = "white-box"
    cost = 50
    default_battery = True
    backends = ("native", "art")
    default_backend = "native"
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
            art_classifier(ctx), norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=params["apgd_steps"],
            targeted=False, nb_random_init=params["apgd_restarts"], batch_size=ctx.batch_size,
            loss_type=loss_type, verbose=False,
        )
        return from_numpy(attack.generate(to_numpy(x), y=one_hot(y, ctx.num_classes)), x)

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        x_adv = x.clone()
        robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
        broken_by: dict[str, int] = {}
        streams = sample_streams(params, len(x), x.device)  # one per sample, through every sub-attack
        for i, sub in enumerate(params["sub_attacks"]):
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                broken_by[sub] = 0
                continue
            seed_everything(params["seed"] + i)
            if sub == "square" and params["backend"] == "native":
                cand = square_native(ctx, x[idx], y[idx], eps, params["square_queries"], 0.8, 1,
                                     streams.subset(idx))[0]
            elif sub == "square":
                cand = run_art_square(ctx, x[idx], y[idx], eps, params["square_queries"], 0.8, 1, params["seed"] + i)
            elif params["backend"] == "native":
                cand = apgd_native(ctx.model, x[idx], y[idx], eps, params["apgd_steps"], params["apgd_restarts"],
                                   "ce" if sub == "apgd-ce" else "dlr", streams.subset(idx))
            else:
                loss_type = "cross_entropy" if sub == "apgd-ce" else "difference_logits_ratio"
                cand = project(self._apgd(ctx, x[idx], y[idx], eps, params, loss_type), x[idx], eps)
            with torch.no_grad():
                fooled = ctx.model(cand).argmax(1) != y[idx]
            x_adv[idx[fooled]] = cand[fooled]
            robust[idx[fooled]] = False
            broken_by[sub] = int(fooled.sum())
        return AttackResult(x_adv, details={"sub_attacks_ran": list(params["sub_attacks"]), "broken_by": broken_by})

"""Square Attack: score-based black-box random search.

Andriushchenko et al., "Square Attack: a query-efficient black-box adversarial attack via
random search", ECCV 2020. Black-box (needs only the model's scores), L-inf, untargeted,
margin loss, p_init 0.8, one restart. Query budget per sample (the initial stripes
included; a sample stops spending queries once it is misclassified): quick 100,
standard 1000, thorough 5000.

Backends:

* ``native`` (default): the paper's Algorithm 1 in torch, batched. Start from vertical
  stripes of +-eps; each iteration draws, for every still-robust sample, one square window
  (side sqrt(p * H * W) on the paper's p schedule) with a fresh +-eps per channel, and keeps
  it when the margin z_y - max_{j != y} z_j falls. Exactly one forward pass per query per
  still-robust sample, nothing else; the windows are drawn on the model's device.
* ``art`` (``art.attacks.evasion.SquareAttack``): the same algorithm through numpy, with
  extra forward passes per iteration (about 1.4 per query on the reference benchmark).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from auditor.art_adapter import art_classifier, from_numpy, one_hot, seed_everything, to_numpy
from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import SampleStreams, check_budget, margin_loss, project, sample_streams
from plugins.attacks._common import p_selection, square_proposal

QUERIES = {"quick": 100, "standard": 1000, "thorough": 5000}


def run_art_square(ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, queries: int,
                   p_init: float, restarts: int, seed: int) -> torch.Tensor:
    from art.attacks.evasion import SquareAttack

    seed_everything(seed)
    attack = SquareAttack(
        art_classifier(ctx), norm=np.inf, max_iter=queries, eps=eps, p_init=p_init,
        nb_restarts=restarts, batch_size=ctx.batch_size, verbose=False,
    )
    x_adv = from_numpy(attack.generate(to_numpy(x), y=one_hot(y, ctx.num_classes)), x)
    return project(x_adv, x, eps)


def _margin(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{j != y} z_j per sample: negative once the sample is misclassified."""
    with torch.no_grad():
        return -margin_loss(model(x).float(), y)


def square_linf_native(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, queries: int,
                       p_init: float, streams: SampleStreams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched L-inf Square Attack; returns the adversarial images, the queries each
    sample spent and its final margin (<= 0: misclassified)."""
    n, c, h, w = x.shape
    device = x.device
    stripes = streams.randint(0, 2, (c, 1, w)).to(x.dtype) * 2 - 1
    x_best = project(x + eps * stripes, x, eps)
    margin = _margin(model, x_best, y)
    spent = torch.ones(n, dtype=torch.int64, device=device)
    for i in range(1, queries):
        active = (margin > 0).nonzero().squeeze(1)  # one small sync per iteration: only robust samples query
        if active.numel() == 0:
            break
        side = int(round(math.sqrt(p_selection(p_init, i, queries) * h * w)))
        side = min(max(side, 1), h - 1 if h > 1 else 1, w - 1 if w > 1 else 1)
        candidate = square_proposal(x[active], x_best[active], eps, side, streams.subset(active))
        new_margin = _margin(model, candidate, y[active])
        spent[active] += 1
        better = new_margin < margin[active]
        keep = active[better]
        x_best[keep] = candidate[better]
        margin[keep] = new_margin[better]
    return x_best, spent, margin


class Square(Attack):
    name = "square"
    title = "Square Attack"
    threat_model = "black-box"
    access = "scores"
    cost = 70
    default_battery = True
    backends = ("native", "art")
    default_backend = "native"
    reference = "Andriushchenko et al., ECCV 2020"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "loss": "margin", "queries": QUERIES[budget], "p_init": 0.8, "restarts": 1,
                "targeted": False}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        if params["backend"] == "art":
            x_adv = run_art_square(ctx, x, y, eps, params["queries"], params["p_init"], params["restarts"],
                                   params["seed"])
            return AttackResult(x_adv)
        x_adv, spent = square_native(ctx, x, y, eps, params["queries"], params["p_init"], params["restarts"],
                                     sample_streams(params, len(x), x.device))
        return AttackResult(x_adv, queries=spent.cpu().numpy().astype(np.float64))


def square_native(ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, queries: int, p_init: float,
                  restarts: int, seed: int | SampleStreams) -> tuple[torch.Tensor, torch.Tensor]:
    """``restarts`` independent runs; a sample already fooled skips the later ones. Each
    sample draws from its own stream (``seed``: the streams, or an int to derive them)."""
    streams = SampleStreams.of(seed, len(x), x.device)
    x_adv = x.clone()
    spent = torch.zeros(len(x), dtype=torch.int64, device=x.device)
    robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for r in range(max(restarts, 1)):
        idx = robust.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        cand, used, margin = square_linf_native(ctx.model, x[idx], y[idx], eps, queries, p_init,
                                                streams.subset(idx))
        spent[idx] += used
        fooled = margin <= 0
        x_adv[idx] = cand
        robust[idx[fooled]] = False
    return x_adv, spent

"""Square Attack on a segmentation loss: score-based black-box random search.

Andriushchenko et al., "Square Attack: a query-efficient black-box adversarial attack via
random search", ECCV 2020 (the L-inf version, Algorithm 1 with its p schedule), with the
segmentation BCE (or Dice) loss of :mod:`plugins.attacks.seg_losses` as the score to
maximise. Black-box: it reads only the model's output maps, never a gradient.

Starts from vertical stripes of +-eps, then each query changes one random square window
to +-eps per channel and keeps it when the loss rises. Square side: sqrt(p * H * W),
p starting at ``p_init`` = 0.05 (the paper's L-inf setting) and halved on the paper's
schedule. Query budget per image (the initial stripes included): quick 100, standard 500,
thorough 2000. Every image spends the whole budget (there is no success criterion to stop
at); ``queries`` in the results says so.

One query is a full forward pass of the image, so on large images this is the slowest
attack: it is not in the default battery; ask for it with ``--attacks seg-square``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import SampleStreams, check_budget, project, sample_streams
from plugins.attacks._common import p_selection, square_proposal
from plugins.attacks.seg_losses import seg_objective

QUERIES = {"quick": 100, "standard": 500, "thorough": 2000}


def square_linf(
    model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float, queries: int,
    p_init: float, loss: str, streams: SampleStreams,
) -> torch.Tensor:
    _, c, h, w = x.shape
    signs = streams.randint(0, 2, (c, 1, w)) * 2 - 1
    x_best = project(x + eps * signs.to(x.dtype), x, eps)
    with torch.no_grad():
        best = seg_objective(model(x_best), target, loss)
    for i in range(1, queries):
        side = int(round(math.sqrt(p_selection(p_init, i, queries) * h * w)))
        side = min(max(side, 1), h, w)
        x_new = square_proposal(x, x_best, eps, side, streams)
        with torch.no_grad():
            value = seg_objective(model(x_new), target, loss)
        better = value > best
        x_best[better] = x_new[better]
        best = torch.where(better, value, best)
    return x_best


class SegSquare(Attack):
    name = "seg-square"
    title = "Square Attack (segmentation BCE loss)"
    threat_model = "black-box"
    access = "scores"
    cost = 70
    tasks = ("segmentation",)
    backends = ("native",)
    default_backend = "native"
    reference = "Andriushchenko et al., ECCV 2020"
    default_battery = False  # one forward pass per query: opt in with --attacks seg-square

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "loss": "bce", "queries": QUERIES[budget], "p_init": 0.05, "targeted": False}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        x_adv = square_linf(ctx.model, x, y, eps, params["queries"], params["p_init"], params["loss"],
                            sample_streams(params, len(x), x.device))
        return AttackResult(x_adv, queries=np.full(len(x), params["queries"], dtype=np.float64))

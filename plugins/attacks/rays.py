"""RayS: a decision-based (label-only) black-box attack, L-inf native.

Chen and Gu, "RayS: a ray searching method for hard-label adversarial attack", KDD 2020.
Needs only the predicted class (see ``_label_only``). Searches over sign directions
s in {-1, +1}^d for the one whose ray x + r * s (clipped to [0, 1]) crosses the decision
boundary at the smallest L-inf radius r. Starting from s = +1 everywhere, it flips the
signs of one block of coordinates at a time, blocks halving in size after each pass
(hierarchical search); a flipped direction costs one query at the best radius so far and,
only when it is misclassified there, a binary search to the new boundary radius (to a
tolerance of 1e-3 / sqrt(d), the paper's 1e-3 in L2 units of the unit direction).
Early stopping: a sample stops once its radius is within eps.

Query budget per sample: quick 1000, standard 5000, thorough 20000 (the paper reports
results at 10 000). Batched: every still-running sample of a chunk flips the same block.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from plugins.attacks._label_only import LabelOnlyAttack, LabelOracle

QUERIES = {"quick": 1000, "standard": 5000, "thorough": 20000}


def _ray(x: torch.Tensor, sign: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x + radius.view(-1, *([1] * (x.dim() - 1))) * sign, 0.0, 1.0)


def _radius_search(oracle: LabelOracle, x: torch.Tensor, y: torch.Tensor, sign: torch.Tensor, high: torch.Tensor,
                   tol: float, spent: torch.Tensor, idx: torch.Tensor, budget: int) -> torch.Tensor:
    """Binary search on the radius of rays misclassified at ``high``; a sample stops at the
    tolerance or when its budget runs out (the radius found so far stays valid)."""
    low = torch.zeros_like(high)
    while True:
        going = ((high - low) > tol) & (spent[idx] < budget)
        g = going.nonzero().squeeze(1)
        if g.numel() == 0:
            return high
        mid = (low[g] + high[g]) / 2
        fooled = oracle.fooled(_ray(x[g], sign[g], mid), y[g])
        spent[idx[g]] += 1
        high[g] = torch.where(fooled, mid, high[g])
        low[g] = torch.where(fooled, low[g], mid)


def rays_linf(oracle: LabelOracle, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any],
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched RayS; returns the best boundary points and the queries spent per sample."""
    n, dim = len(x), x[0].numel()
    budget = int(params["queries"])
    tol = float(params["tolerance_l2"]) / math.sqrt(dim)
    sign = torch.ones_like(x)
    best = torch.full((n,), float("inf"), device=x.device)
    spent = torch.zeros(n, dtype=torch.int64, device=x.device)
    level, block = 0, 0
    while True:
        active = (best > eps) & (spent < budget)
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        size = math.ceil(dim / 2**level)
        start, end = block * size, min(dim, (block + 1) * size)
        attempt = sign[idx].flatten(1).clone()
        attempt[:, start:end] *= -1
        attempt = attempt.view_as(x[idx])
        # an unfound boundary is probed at the largest radius, 1 (every pixel at 0 or 1)
        probe = torch.where(torch.isinf(best[idx]), torch.ones_like(best[idx]), best[idx])
        fooled = oracle.fooled(_ray(x[idx], attempt, probe), y[idx])
        spent[idx] += 1
        better = idx[fooled]
        if better.numel():
            radius = _radius_search(oracle, x[better], y[better], attempt[fooled], probe[fooled].clone(), tol,
                                    spent, better, budget)
            improved = radius < best[better]
            best[better[improved]] = radius[improved]
            sign[better[improved]] = attempt[fooled][improved]
        block += 1
        if block == 2**level or end == dim:
            level, block = level + 1, 0
            if 2**level > dim:  # every coordinate flipped on its own: start the hierarchy again
                level = 0
    # a sample whose boundary lies beyond eps (or was never found) returns its best ray at eps
    return _ray(x, sign, torch.clamp(best, max=max(eps, 0.0))), spent


class RayS(LabelOnlyAttack):
    name = "rays"
    title = "RayS (label-only)"
    reference = "Chen and Gu, KDD 2020"
    queries = QUERIES
    settings = {"tolerance_l2": 1e-3, "start": "all +1 signs", "early_stop": "radius <= eps"}
    search = staticmethod(rays_linf)

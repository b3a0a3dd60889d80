"""HopSkipJump: a decision-based (label-only) black-box attack, L-inf.

Chen, Jordan and Wainwright, "HopSkipJumpAttack: a query-efficient decision-based
attack", IEEE S&P 2020. Needs only the predicted class (see ``_label_only``): start from a
misclassified random image (else the nearest image of the chunk that the model labels
otherwise), walk to the decision boundary by binary search, estimate the
boundary's normal from the labels of ``num_evals`` random points around it (Monte-Carlo,
baseline-corrected), step along its sign with a geometric step-size search, and search
back to the boundary; repeat until the sample's L-inf distance is within eps or its query
budget cannot pay another iteration. The paper's L-inf settings: theta = 1 / d^2, delta =
0.1 in the first iteration and d * theta * distance after, num_evals = 100 * sqrt(t)
capped at 1000, step distance / sqrt(t). The binary searches stop after
``binary_steps`` halvings (the paper searches to theta; the audit only needs to know
whether the distance is within eps, so 10 halvings, 1/1024 of the distance, suffice).

Query budget per sample (random starts and every search included): quick 1000, standard
5000, thorough 20000. Batched: every still-running sample of a chunk moves in lock step.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from plugins.attacks._label_only import LabelOnlyAttack, LabelOracle, linf_distance

QUERIES = {"quick": 1000, "standard": 5000, "thorough": 20000}
FLOATS_PER_CALL = 1 << 23  # random directions held at once in a gradient estimate


def _boundary_search(oracle: LabelOracle, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, steps: int,
                     spent: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Shrink the L-inf radius around ``x`` that clips adversarial ``x_adv`` while the
    clipped image stays misclassified; returns the clipped image at the smallest radius found."""
    high = linf_distance(x_adv, x)
    low = torch.zeros_like(high)
    for _ in range(steps):
        mid = (low + high) / 2
        radius = mid.view(-1, *([1] * (x.dim() - 1)))
        fooled = oracle.fooled(torch.min(torch.max(x_adv, x - radius), x + radius), y)
        spent[idx] += 1
        high = torch.where(fooled, mid, high)
        low = torch.where(fooled, low, mid)
    radius = high.view(-1, *([1] * (x.dim() - 1)))
    return torch.min(torch.max(x_adv, x - radius), x + radius)


def _gradient_sign(oracle: LabelOracle, boundary: torch.Tensor, y: torch.Tensor, delta: torch.Tensor,
                   num_evals: int, gen: torch.Generator) -> torch.Tensor:
    """Sign of the Monte-Carlo estimate of the boundary normal (the paper's eq. 16, with
    its baseline): sums over chunks of directions, so memory stays bounded."""
    m = len(boundary)
    per_chunk = max(1, min(num_evals, FLOATS_PER_CALL // max(m * boundary[0].numel(), 1)))
    scale = delta.view(-1, 1, *([1] * (boundary.dim() - 1)))
    sum_frv = torch.zeros_like(boundary)
    sum_rv = torch.zeros_like(boundary)
    sum_f = torch.zeros(m, device=boundary.device)
    done = 0
    while done < num_evals:
        k = min(per_chunk, num_evals - done)
        rv = torch.rand((m, k, *boundary.shape[1:]), generator=gen, device=boundary.device) * 2 - 1
        points = torch.clamp(boundary[:, None] + scale * rv, 0.0, 1.0)
        rv = (points - boundary[:, None]) / scale
        f = oracle.fooled(points.flatten(0, 1), y.repeat_interleave(k)).view(m, k).to(boundary.dtype) * 2 - 1
        sum_frv += (f.view(m, k, *([1] * (boundary.dim() - 1))) * rv).sum(1)
        sum_rv += rv.sum(1)
        sum_f += f.sum(1)
        done += k
    mean_f = (sum_f / num_evals).view(-1, *([1] * (boundary.dim() - 1)))
    one_sided = mean_f.abs() == 1  # all points on one side: the paper falls back to the mean direction
    grad = torch.where(one_sided, mean_f * sum_rv, sum_frv - mean_f * sum_rv)
    return torch.sign(grad)


def _random_start(oracle: LabelOracle, x: torch.Tensor, y: torch.Tensor, tries: int, spent: torch.Tensor,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform noise images until one is misclassified (up to ``tries`` per sample)."""
    start = x.clone()
    found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(tries):
        todo = (~found).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        noise = torch.rand(x[todo].shape, generator=gen, device=x.device)
        fooled = oracle.fooled(noise, y[todo])
        spent[todo] += 1
        start[todo[fooled]] = noise[fooled]
        found[todo[fooled]] = True
    todo = (~found).nonzero().squeeze(1)
    if todo.numel():
        # noise that the model always files under one class cannot start the samples of
        # that class: start them from the nearest image of the chunk the model labels otherwise
        labels = oracle(x)
        spent += 1
        gaps = (x[todo].flatten(1)[:, None] - x.flatten(1)[None]).abs().amax(2)
        gaps[labels[None] == y[todo][:, None]] = float("inf")
        nearest = gaps.argmin(1)
        usable = torch.isfinite(gaps.gather(1, nearest[:, None]).squeeze(1))
        start[todo[usable]] = x[nearest[usable]]
        found[todo[usable]] = True
    return start, found


def hopskipjump_linf(oracle: LabelOracle, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any],
                     gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched HopSkipJump (L-inf); returns the boundary points and the queries spent per sample."""
    budget = int(params["queries"])
    steps, halvings = int(params["binary_steps"]), int(params["step_halvings"])
    dim = x[0].numel()
    theta = 1.0 / dim**2
    spent = torch.zeros(len(x), dtype=torch.int64, device=x.device)
    tries = min(int(params["init_tries"]), budget)
    x_adv, found = _random_start(oracle, x, y, tries, spent, gen)
    found &= spent + steps <= budget
    idx = found.nonzero().squeeze(1)
    if idx.numel():
        x_adv[idx] = _boundary_search(oracle, x[idx], y[idx], x_adv[idx], steps, spent, idx)
    for t in range(1, 1 << 30):
        num_evals = int(min(params["init_evals"] * math.sqrt(t), params["max_evals"]))
        dist = linf_distance(x_adv, x)
        active = found & (dist > eps) & (spent + num_evals + halvings + steps <= budget)
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        delta = torch.full_like(dist[idx], 0.1) if t == 1 else dim * theta * dist[idx]
        update = _gradient_sign(oracle, x_adv[idx], y[idx], delta.clamp_min(1e-6), num_evals, gen)
        spent[idx] += num_evals
        moved = _geometric_step(oracle, x_adv[idx], y[idx], update, dist[idx] / math.sqrt(t), halvings, spent, idx)
        x_adv[idx] = _boundary_search(oracle, x[idx], y[idx], moved, steps, spent, idx)
    return x_adv, spent


def _geometric_step(oracle: LabelOracle, boundary: torch.Tensor, y: torch.Tensor, update: torch.Tensor,
                    step: torch.Tensor, halvings: int, spent: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Step along ``update``, halving the step until the image stays misclassified; a
    sample that never finds one keeps its boundary point."""
    out = boundary.clone()
    searching = torch.ones(len(boundary), dtype=torch.bool, device=boundary.device)
    step = step.clone()
    for _ in range(halvings):
        s = searching.nonzero().squeeze(1)
        if s.numel() == 0:
            break
        trial = torch.clamp(boundary[s] + step[s].view(-1, *([1] * (boundary.dim() - 1))) * update[s], 0.0, 1.0)
        fooled = oracle.fooled(trial, y[s])
        spent[idx[s]] += 1
        out[s[fooled]] = trial[fooled]
        searching[s[fooled]] = False
        step[s[~fooled]] /= 2
    return out


class HopSkipJump(LabelOnlyAttack):
    name = "hopskipjump"
    title = "HopSkipJump (label-only)"
    reference = "Chen, Jordan and Wainwright, IEEE S&P 2020"
    queries = QUERIES
    settings = {"init_evals": 100, "max_evals": 1000, "binary_steps": 10, "step_halvings": 10, "init_tries": 20,
                "theta": "1/d^2"}
    search = staticmethod(hopskipjump_linf)

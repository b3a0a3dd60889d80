"""Shared pieces of the segmentation attacks: adversarial losses on logit maps, gradients
and the L-inf PGD loop they all use.

Labels reach an attack as (N, H, W) int64 class maps. Pixels outside the region of
interest (e.g. a fundus field of view) carry :data:`IGNORE_INDEX` and take no part in
any loss, so an attack spends its budget only where the audit measures.

Losses are per-image objectives to **maximise**, built on logits (never on saturated
probabilities) and computed in float64:

* ``bce``: binary cross-entropy with logits against the true mask, averaged over the
  pixels in the ROI; for (N, K, H, W) outputs the softmax cross-entropy.
* ``dice``: 1 - soft Dice of sigmoid(logit) (softmax for K classes, mean over the
  foreground classes) against the true mask, smoothing 1 pixel.
* ``background``: minus the BCE (CE) towards an all-background mask. Maximising it drives
  every pixel in the ROI to background: the targeted "lesion removal" objective.
"""

from __future__ import annotations

from typing import Callable

import torch

from auditor.numerics import IGNORE_INDEX, SEG_LOSSES as LOSSES, SampleStreams, objective_gradient, project, seg_objective  # noqa: F401

LOSS_TITLES = {"bce": "BCE", "dice": "Dice", "background": "BCE to background"}

# Steps / step size / starts, the same step schedule as the classification PGD. The first
# start is the clean image, later ones uniform noise in the eps ball.
PGD_BUDGET = {
    "quick": {"steps": 10, "step_size_eps_fraction": 0.25, "step_size_255": None, "starts": 1},
    "standard": {"steps": 20, "step_size_eps_fraction": None, "step_size_255": 1.0, "starts": 1},
    "thorough": {"steps": 50, "step_size_eps_fraction": 0.1, "step_size_255": 1.0, "starts": 3},
}


def foreground_empty(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) True where no pixel inside the ROI is predicted as foreground."""
    pred = logits[:, 0] >= 0 if logits.shape[1] == 1 else logits.argmax(1) > 0
    return ~(pred & (target != IGNORE_INDEX)).flatten(1).any(1)


def seg_pgd(
    model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float, alpha: float,
    steps: int, starts: int, loss: str, streams: SampleStreams, stop_when_empty: bool = False,
    on_step: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, dict[str, int]]:
    """Batched L-inf PGD ascending ``loss``. With several starts each image keeps the one
    with the highest final objective. ``stop_when_empty`` freezes an image as soon as its
    predicted mask is empty (the lesion-removal goal is reached; more steps cost passes).
    ``on_step`` is called after every step (the engine's progress: one batch of large
    images under many steps takes minutes)."""
    best = x.clone()
    best_value = torch.full((len(x),), -float("inf"), dtype=torch.float64, device=x.device)
    emptied = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for start in range(max(starts, 1)):
        if start == 0:
            x_adv = x.clone()
        else:
            noise = (streams.rand(x.shape[1:]).to(x.dtype) * 2 - 1) * eps
            x_adv = project(x + noise, x, eps)
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(steps):
            idx = active.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            grad, _, logits = objective_gradient(model, x_adv[idx], target[idx], loss)
            if stop_when_empty:
                done = foreground_empty(logits, target[idx])
                active[idx[done]] = False
                idx, grad = idx[~done], grad[~done]
                if idx.numel() == 0:
                    break
            x_adv[idx] = project(x_adv[idx] + alpha * grad.sign(), x[idx], eps)
            if on_step is not None:
                on_step()
        if starts <= 1:
            return x_adv, {"emptied_early": int((~active).sum())}
        with torch.no_grad():
            logits = model(x_adv)
            value = seg_objective(logits, target, loss)
        better = value > best_value
        best[better] = x_adv[better]
        best_value[better] = value[better]
        emptied |= foreground_empty(logits, target)
    return best, {"starts_run": max(starts, 1), "emptied": int(emptied.sum())}

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

import torch
import torch.nn.functional as F

from plugins.attacks._common import project

IGNORE_INDEX = -1
LOSSES = ("bce", "dice", "background")
LOSS_TITLES = {"bce": "BCE", "dice": "Dice", "background": "BCE to background"}
DICE_SMOOTH = 1.0

# Steps / step size / starts, the same step schedule as the classification PGD. The first
# start is the clean image, later ones uniform noise in the eps ball.
PGD_BUDGET = {
    "quick": {"steps": 10, "step_size_eps_fraction": 0.25, "step_size_255": None, "starts": 1},
    "standard": {"steps": 20, "step_size_eps_fraction": None, "step_size_255": 1.0, "starts": 1},
    "thorough": {"steps": 50, "step_size_eps_fraction": 0.1, "step_size_255": 1.0, "starts": 3},
}


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    valid = valid.to(values.dtype)
    return (values * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)


def seg_objective(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-image objective (N,) to maximise; ``target`` is (N, H, W) with IGNORE_INDEX outside the ROI."""
    if loss not in LOSSES:
        raise ValueError(f"unknown segmentation loss {loss!r} (known: {', '.join(LOSSES)})")
    valid = target != IGNORE_INDEX
    labels = target.clamp(min=0)
    z = logits.double()
    if z.shape[1] == 1:
        z = z[:, 0]
        truth = (labels > 0).double()
        if loss == "bce":
            return _masked_mean(F.binary_cross_entropy_with_logits(z, truth, reduction="none"), valid)
        if loss == "background":
            return -_masked_mean(F.softplus(z), valid)  # BCE towards 0 is softplus(z)
        p = torch.sigmoid(z) * valid
        truth = truth * valid
        inter = (p * truth).flatten(1).sum(1)
        dice = (2 * inter + DICE_SMOOTH) / (p.flatten(1).sum(1) + truth.flatten(1).sum(1) + DICE_SMOOTH)
        return 1 - dice
    if loss == "bce":
        return _masked_mean(F.cross_entropy(z, labels, reduction="none"), valid)
    if loss == "background":
        return -_masked_mean(F.cross_entropy(z, torch.zeros_like(labels), reduction="none"), valid)
    k = z.shape[1]
    p = torch.softmax(z, dim=1) * valid[:, None]
    truth = F.one_hot(labels, k).permute(0, 3, 1, 2).double() * valid[:, None]
    inter = (p * truth).flatten(2).sum(2)[:, 1:]
    sums = (p.flatten(2).sum(2) + truth.flatten(2).sum(2))[:, 1:]
    dice = (2 * inter + DICE_SMOOTH) / (sums + DICE_SMOOTH)
    return 1 - dice.mean(1)


def objective_gradient(
    model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, loss: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input gradient of the summed objective, the per-image objective and the logits."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    value = seg_objective(logits, target, loss)
    (grad,) = torch.autograd.grad(value.sum(), x)
    return grad, value.detach(), logits.detach()


def foreground_empty(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) True where no pixel inside the ROI is predicted as foreground."""
    pred = logits[:, 0] >= 0 if logits.shape[1] == 1 else logits.argmax(1) > 0
    return ~(pred & (target != IGNORE_INDEX)).flatten(1).any(1)


def seg_pgd(
    model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float, alpha: float,
    steps: int, starts: int, loss: str, generator: torch.Generator, stop_when_empty: bool = False,
) -> tuple[torch.Tensor, dict[str, int]]:
    """Batched L-inf PGD ascending ``loss``. With several starts each image keeps the one
    with the highest final objective. ``stop_when_empty`` freezes an image as soon as its
    predicted mask is empty (the lesion-removal goal is reached; more steps cost passes)."""
    best = x.clone()
    best_value = torch.full((len(x),), -float("inf"), dtype=torch.float64, device=x.device)
    emptied = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for start in range(max(starts, 1)):
        if start == 0:
            x_adv = x.clone()
        else:
            noise = (torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1) * eps
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

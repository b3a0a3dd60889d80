"""Shared pieces of the built-in attacks: budgets, losses, batching and projection."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

BUDGETS = ("quick", "standard", "thorough")


def check_budget(budget: str) -> None:
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}")


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project ``x_adv`` onto the L-inf ball of radius ``eps`` around ``x`` and into [0,1]."""
    return torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0.0, 1.0)


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin, per sample: max_{j != y} z_j - z_y (positive = misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.max(dim=1).values - true


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020), per sample; needs >= 3 classes:
    -(z_y - max_{j != y} z_j) / (z_(1) - z_(3)), z_(i) the i-th largest logit."""
    ordered = logits.sort(dim=1, descending=True).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return -(true - other.max(dim=1).values) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": ce_loss, "cw": margin_loss, "dlr": dlr_loss,
}


def input_gradient(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed per-sample loss w.r.t. the input, and the logits."""
    grad, logits, _ = loss_and_gradient(model, x, y, loss)
    return grad, logits


def loss_and_gradient(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input gradient, logits and per-sample loss from one forward and one backward pass."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    values = LOSSES[loss](logits, y)
    (grad,) = torch.autograd.grad(values.sum(), x)
    return grad, logits.detach(), values.detach()


def generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen

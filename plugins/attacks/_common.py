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


_SQUARE_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
                    (8000, 256))


def p_selection(p_init: float, iteration: int, total: int) -> float:
    """Square Attack's piecewise-constant schedule of the square's area fraction
    (Andriushchenko et al. 2020), rescaled to 10 000 iterations as in the paper's code."""
    it = int(iteration / max(total, 1) * 10000)
    divisor = 512
    for bound, div in _SQUARE_SCHEDULE:
        if it <= bound:
            divisor = div
            break
    return p_init / divisor


def square_proposal(x: torch.Tensor, x_best: torch.Tensor, eps: float, side: int,
                    gen: torch.Generator) -> torch.Tensor:
    """One Square Attack step for a batch: in a random ``side`` x ``side`` window per sample,
    set every channel to x +- eps (one sign per channel), redrawing signs that would leave
    the window unchanged (up to 10 draws, as the paper does); elsewhere keep ``x_best``.
    All drawn on the inputs' device."""
    n, c, h, w = x.shape
    device = x.device
    top = torch.randint(0, h - side + 1, (n, 1), generator=gen, device=device)
    left = torch.randint(0, w - side + 1, (n, 1), generator=gen, device=device)
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    inside = (((rows >= top) & (rows < top + side))[:, None, :, None]
              & ((cols >= left) & (cols < left + side))[:, None, None, :])  # (n, 1, h, w)
    sign = torch.randint(0, 2, (n, c, 1, 1), generator=gen, device=device).to(x.dtype) * 2 - 1
    proposal = torch.clamp(x + eps * sign, 0.0, 1.0)
    for _ in range(9):
        same = ((proposal - x_best).abs() * inside).flatten(1).amax(1) < 1e-7
        if not bool(same.any()):
            break
        redraw = torch.randint(0, 2, (n, c, 1, 1), generator=gen, device=device).to(x.dtype) * 2 - 1
        proposal = torch.where(same[:, None, None, None], torch.clamp(x + eps * redraw, 0.0, 1.0), proposal)
    return torch.where(inside, proposal, x_best)


def step_size(params: dict, eps: float) -> float:
    """A PGD step: the larger of ``step_size_eps_fraction`` x eps and ``step_size_255`` / 255
    (whichever of the two the budget sets)."""
    sizes = []
    if params.get("step_size_eps_fraction"):
        sizes.append(params["step_size_eps_fraction"] * eps)
    if params.get("step_size_255"):
        sizes.append(params["step_size_255"] / 255.0)
    return max(sizes)

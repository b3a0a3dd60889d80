"""Shared pieces of the built-in attacks: the Square Attack schedule and window step."""

from __future__ import annotations

import torch

from auditor.numerics import SampleStreams


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
                    streams: SampleStreams) -> torch.Tensor:
    """One Square Attack step for a batch: in a random ``side`` x ``side`` window per sample,
    set every channel to x +- eps (one sign per channel), redrawing signs that would leave
    the window unchanged (up to 10 draws, as the paper does); elsewhere keep ``x_best``.
    All drawn on the inputs' device, each sample from its own stream (redraws included, so
    a sample's draws never depend on its batch)."""
    _, c, h, w = x.shape
    device = x.device
    top = streams.randint(0, h - side + 1, (1,))
    left = streams.randint(0, w - side + 1, (1,))
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    inside = (((rows >= top) & (rows < top + side))[:, None, :, None]
              & ((cols >= left) & (cols < left + side))[:, None, None, :])  # (n, 1, h, w)
    sign = streams.randint(0, 2, (c, 1, 1)).to(x.dtype) * 2 - 1
    proposal = torch.clamp(x + eps * sign, 0.0, 1.0)
    for _ in range(9):
        same = ((proposal - x_best).abs() * inside).flatten(1).amax(1) < 1e-7
        if not bool(same.any()):
            break
        again = same.nonzero().squeeze(1)  # only these samples draw: the others' streams stay put
        redraw = streams.subset(again).randint(0, 2, (c, 1, 1)).to(x.dtype) * 2 - 1
        proposal[again] = torch.clamp(x[again] + eps * redraw, 0.0, 1.0)
    return torch.where(inside, proposal, x_best)

"""What the corruption families share: per-image random draws and kernel sizes."""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def per_image(x: torch.Tensor, seeds: Sequence[int],
              draw: Callable[[tuple[int, ...], torch.Generator], torch.Tensor]) -> torch.Tensor:
    """One draw per image from its own generator, stacked and moved to ``x``'s device: an
    image's noise depends on its seed alone, never on the batch around it."""
    out = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(int(seed))
        out.append(draw(tuple(x.shape[1:]), generator))
    return torch.stack(out).to(device=x.device, dtype=x.dtype)


def uniform_per_image(x: torch.Tensor, seeds: Sequence[int], low: float, high: float) -> torch.Tensor:
    """(N,) numbers uniform in [low, high), one per image from its seed."""
    draws = [low + (high - low) * torch.rand(1, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.cat(draws).to(device=x.device, dtype=x.dtype)


def odd_kernel(size: float, minimum: int = 3) -> int:
    """The odd kernel size nearest ``size``, at least ``minimum``."""
    k = max(int(round(size)), minimum)
    return k if k % 2 else k + 1

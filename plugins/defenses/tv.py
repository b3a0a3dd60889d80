"""Total-variation minimisation in front of the model.

Guo et al., "Countering Adversarial Images using Input Transformations" (ICLR 2018) use
TV minimisation to remove perturbations. This is the deterministic variant: each channel
is denoised with Chambolle's projection algorithm for the ROF model
``min_u 0.5 * ||u - x||^2 + weight * TV(u)`` (Chambolle, JMIV 2004; the algorithm of
scikit-image's ``denoise_tv_chambolle``), ``steps`` iterations (default 30) in torch, so
it runs on the model's device. Defaults: ``weight`` 0.05 (in [0,1] pixel units), 30
steps. ART's ``TotalVarMin`` (random pixel dropout, then a scipy solver per image) is the
randomised variant and far slower.

Treated as not differentiable: adaptive evaluation uses BPDA with the identity, which is
how Athalye et al. (ICML 2018) broke TV minimisation (the unrolled solver is
differentiable in principle, but its square roots make the gradient ill-conditioned).
Deterministic.

Example::

    medaudit run model.pt --data test/ --defense tv:weight=0.05,steps=30
"""

from __future__ import annotations

from typing import Any

import torch

from plugins.defenses._common import Param, PreprocessingDefense


def tv_chambolle(x: torch.Tensor, weight: float, steps: int) -> torch.Tensor:
    """ROF denoising of each (H, W) plane of ``x`` (N, C, H, W) by Chambolle's algorithm."""
    if weight <= 0 or steps <= 0:
        return x
    img = x.float()
    p = torch.zeros((2,) + tuple(img.shape), dtype=img.dtype, device=img.device)
    tau = 0.25  # 1 / (2 * number of spatial axes): the step that guarantees convergence
    out = img
    for i in range(steps):
        if i > 0:
            d = -p.sum(0)
            d[..., 1:, :] += p[0, ..., :-1, :]
            d[..., :, 1:] += p[1, ..., :, :-1]
            out = img + d
        g = torch.zeros_like(p)
        g[0, ..., :-1, :] = out[..., 1:, :] - out[..., :-1, :]
        g[1, ..., :, :-1] = out[..., :, 1:] - out[..., :, :-1]
        norm = torch.sqrt((g**2).sum(0, keepdim=True))
        p = (p - tau * g) / (1.0 + norm * (tau / weight))
    return out.clamp(0, 1).to(x.dtype)


class TotalVariation(torch.nn.Module):
    def __init__(self, weight: float, steps: int) -> None:
        super().__init__()
        self.weight, self.steps = weight, steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tv_chambolle(x, self.weight, self.steps)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, steps={self.steps}"


class TV(PreprocessingDefense):
    name = "tv"
    description = "total-variation minimisation (Chambolle ROF denoising)"
    differentiable = False
    randomized = False
    reference = "Guo et al., ICLR 2018; Chambolle, JMIV 2004"
    params = {
        "weight": Param(float, 0.05, 0.0, 10.0, "TV weight (larger: smoother)"),
        "steps": Param(int, 30, 1, 1000, "Chambolle iterations"),
    }

    def make(self, params: dict[str, Any]) -> torch.nn.Module:
        return TotalVariation(params["weight"], params["steps"])

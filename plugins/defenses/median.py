"""Spatial smoothing: a median filter in front of the model.

Xu et al., "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks"
(NDSS 2018), local smoothing; ART's ``SpatialSmoothing``. Each channel is replaced by
the median of a ``size`` x ``size`` window (default 3, reflect padding at the borders).

Implemented with ``unfold`` and ``median`` in torch, so it runs on the model's device and
is differentiable almost everywhere (the gradient flows to the median pixel of each
window): the adaptive attack differentiates through it directly. Deterministic.

Example::

    medaudit run model.pt --data test/ --defense median:size=3
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from plugins.defenses._common import Param, PreprocessingDefense


def median_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Per-channel median over ``size`` x ``size`` windows; output has the input's shape.
    Even sizes use the lower median and a window shifted up-left by one pixel."""
    if size <= 1:
        return x
    n, c, h, w = x.shape
    before, after = (size - 1) // 2, size // 2
    padded = F.pad(x, (before, after, before, after), mode="reflect" if min(h, w) > after else "replicate")
    patches = F.unfold(padded.reshape(n * c, 1, h + size - 1, w + size - 1), size)  # (NC, size*size, H*W)
    return patches.median(dim=1).values.reshape(n, c, h, w)


class MedianFilter(torch.nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return median_filter(x, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class Median(PreprocessingDefense):
    name = "median"
    description = "spatial smoothing with a median filter"
    differentiable = True
    randomized = False
    reference = "Xu et al., NDSS 2018"
    params = {"size": Param(int, 3, 2, 11, "window side in pixels")}

    def make(self, params: dict[str, Any]) -> torch.nn.Module:
        return MedianFilter(params["size"])

"""Feature squeezing by colour bit-depth reduction.

Xu et al., "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks"
(NDSS 2018); ART's ``FeatureSqueezing``. Every value is rounded to ``bits`` bits
(default 4: 16 levels per channel): ``round(x * (2**bits - 1)) / (2**bits - 1)``.

Not differentiable (rounding has zero gradient almost everywhere): adaptive evaluation
uses BPDA with the identity (Athalye et al., ICML 2018). Deterministic.

Example::

    medaudit run model.pt --data test/ --defense bit-depth:bits=4
"""

from __future__ import annotations

from typing import Any

import torch

from plugins.defenses._common import Param, PreprocessingDefense


class BitDepthReduction(torch.nn.Module):
    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = float(2**self.bits - 1)
        return torch.round(x.clamp(0, 1) * levels) / levels

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class BitDepth(PreprocessingDefense):
    name = "bit-depth"
    description = "feature squeezing: colour bit-depth reduction"
    differentiable = False
    randomized = False
    reference = "Xu et al., NDSS 2018"
    params = {"bits": Param(int, 4, 1, 8, "bits per channel value")}

    def make(self, params: dict[str, Any]) -> torch.nn.Module:
        return BitDepthReduction(params["bits"])

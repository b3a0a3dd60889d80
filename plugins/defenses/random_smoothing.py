"""Randomised smoothing: Gaussian noise copies and a majority vote over the model's answers.

Cohen et al., "Certified Adversarial Robustness via Randomized Smoothing" (ICML 2019);
for medical images, MedRDF (Xu et al., "MedRDF: A Robust and Retrain-Less Diagnostic
Framework for Medical Pretrained Models Against Adversarial Attack", IEEE TMI 2022), which
votes over noisy, denoised copies of the input. Each copy is ``clamp(x + sigma * N(0, I),
0, 1)``; the prediction is the class most copies vote for (``samples`` copies, default 32;
``sigma`` default 0.05 in [0,1] units, i.e. about 13/255). No certificate is computed.

Randomised: the defended model draws its noise from a generator seeded by the audit seed
and each image's content, so a prediction is a deterministic function of the image.
Adaptive evaluation uses EoT (Athalye et al., ICML 2018): the attack differentiates the
mean logits over ``eot_samples`` noise draws.

Example::

    medaudit run model.pt --data test/ --defense random-smoothing:sigma=0.05,samples=32,eot_samples=8
"""

from __future__ import annotations

from typing import Any

import torch

from plugins.defenses._common import Param, PreprocessingDefense


class GaussianNoise(torch.nn.Module):
    """One noisy copy: ``clamp(x + sigma * noise, 0, 1)``. ``generator`` (optional) makes
    the draw reproducible; without it the global torch generator is used."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + self.sigma * noise).clamp(0, 1)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class RandomSmoothing(PreprocessingDefense):
    name = "random-smoothing"
    description = "Gaussian noise copies with a majority vote (randomised smoothing, MedRDF-style)"
    differentiable = True
    randomized = True
    reference = "Cohen et al., ICML 2019; Xu et al., IEEE TMI 2022 (MedRDF)"
    params = {
        "sigma": Param(float, 0.05, 0.0, 1.0, "noise standard deviation in [0,1] units"),
        "samples": Param(int, 32, 1, 10000, "noisy copies voted over per prediction"),
    }

    def make(self, params: dict[str, Any]) -> torch.nn.Module:
        return GaussianNoise(params["sigma"])

    def vote_samples(self, params: dict[str, Any]) -> int:
        return int(params["samples"])

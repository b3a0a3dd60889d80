"""Sensor noise: Gaussian (read-out), Poisson (photon counting, "shot" noise) and Rician
(magnitude MR images).

Gaussian and shot noise: Hendrycks and Dietterich, "Benchmarking Neural Network Robustness
to Common Corruptions and Perturbations" (ICLR 2019, ImageNet-C) for the generic ladder;
Di Salvo et al., "MedMNIST-C" (2024) for DermaMNIST, RetinaMNIST and PneumoniaMNIST.
Rician noise: Gudbjartsson and Patz, "The Rician distribution of noisy MRI data" (MRM 1995):
the magnitude of a complex signal with Gaussian noise on both channels. Each image's noise
comes from its own seed (torch generators).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from auditor.interfaces import Corruption
from plugins.corruptions._common import per_image

IMAGENET_C = "Hendrycks and Dietterich, ICLR 2019 (ImageNet-C)"
MEDMNIST_C = "Di Salvo et al. 2024 (MedMNIST-C)"


def _normal(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator)


class GaussianNoise(Corruption):
    name = "gaussian-noise"
    title = "Gaussian noise"
    modalities = ("dermoscopy", "fundoscopy", "chest-xray", "ct", "ultrasound", "oct")
    reference = f"{IMAGENET_C}; per-modality ladders from {MEDMNIST_C}"
    library = "torch"
    parameter = "sigma"
    ladders = {"default": (0.08, 0.12, 0.18, 0.26, 0.38), "dermoscopy": (0.04, 0.08, 0.12, 0.18, 0.26),
               "fundoscopy": (0.04, 0.08, 0.12, 0.16, 0.20), "chest-xray": (0.04, 0.05, 0.06, 0.07, 0.08)}

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        return x + params["sigma"] * per_image(x, seeds, _normal)


class PoissonNoise(Corruption):
    name = "poisson-noise"
    title = "Poisson (shot) noise"
    modalities = ("chest-xray",)
    reference = f"{IMAGENET_C} (shot noise); chest X-ray ladder from {MEDMNIST_C} (PneumoniaMNIST)"
    library = "torch"
    parameter = "photons"  # expected counts at full intensity: fewer photons, more noise
    ladders = {"default": (60, 25, 12, 5, 3), "chest-xray": (300, 200, 150, 100, 80)}

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        lam = float(params["photons"])
        rates = x.detach().clamp(0, 1).cpu() * lam
        counts = torch.stack([torch.poisson(r, generator=torch.Generator().manual_seed(int(s)))
                              for r, s in zip(rates, seeds)])
        return (counts / lam).to(device=x.device, dtype=x.dtype)


class RicianNoise(Corruption):
    name = "rician-noise"
    title = "Rician noise"
    modalities = ("mri",)
    reference = "Gudbjartsson and Patz, Magn Reson Med 1995 (Rician magnitude noise); ladder: medaudit's, " \
                "up to half of TorchIO RandomNoise's default std range"
    library = "torch"
    parameter = "sigma"
    ladders = {"default": (0.02, 0.04, 0.06, 0.09, 0.12)}

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        sigma = float(params["sigma"])
        noise = per_image(x, seeds, lambda shape, g: torch.randn((2, *shape), generator=g))
        return torch.sqrt((x + sigma * noise[:, 0]) ** 2 + (sigma * noise[:, 1]) ** 2)

"""Exposure and colour: brightness, contrast, gamma, a white-balance cast, haze and uneven
illumination. Vectorised on the device (kornia where it implements the operation).

Brightness, contrast and gamma ladders: Di Salvo et al., "MedMNIST-C" (2024) ("brightness
down", "contrast down", "gamma correction up"), per data set where it tunes them. Haze and
uneven illumination follow the degradation model of fundus photographs in Shen et al.,
"Modeling and Enhancing Low-Quality Retinal Fundus Images" (IEEE TMI 2020): a veil of
scattered light, and a smooth luminance field across the field of view.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from auditor.errors import UsageError
from auditor.interfaces import Corruption
from plugins.corruptions._common import uniform_per_image
from plugins.corruptions.noise import IMAGENET_C, MEDMNIST_C

SHEN_2020 = "Shen et al., IEEE TMI 2020 (fundus degradation model)"


class Brightness(Corruption):
    name = "brightness"
    title = "Brightness (under-exposure)"
    modalities = ("dermoscopy", "fundoscopy", "histopathology")
    reference = f"{MEDMNIST_C}, 'brightness down' (DermaMNIST, RetinaMNIST, PneumoniaMNIST)"
    library = "torch"
    parameter = "factor"  # intensities are multiplied by it (PIL ImageEnhance.Brightness)
    ladders = {"default": (0.9, 0.8, 0.7, 0.6, 0.5)}

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        return x * float(params["factor"])


class Contrast(Corruption):
    name = "contrast"
    title = "Contrast (reduced)"
    modalities = ("dermoscopy", "chest-xray", "ultrasound", "histopathology")
    reference = f"{IMAGENET_C}; per-modality ladders from {MEDMNIST_C} ('contrast down')"
    library = "kornia.enhance.adjust_contrast_with_mean_subtraction"
    parameter = "factor"  # blend towards each image's mean grey level (PIL ImageEnhance.Contrast)
    ladders = {"default": (0.4, 0.3, 0.2, 0.1, 0.05), "dermoscopy": (0.8, 0.7, 0.6, 0.5, 0.4),
               "fundoscopy": (0.9, 0.8, 0.7, 0.6, 0.4), "chest-xray": (0.9, 0.8, 0.7, 0.6, 0.4)}

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        import kornia  # imported on use: it costs most of a second at start-up
        return kornia.enhance.adjust_contrast_with_mean_subtraction(x, float(params["factor"]))


class Gamma(Corruption):
    name = "gamma"
    title = "Gamma (exposure curve)"
    modalities = ("chest-xray",)
    reference = f"{MEDMNIST_C}, 'gamma correction up' (ChestMNIST, PneumoniaMNIST)"
    library = "kornia.enhance.adjust_gamma"
    parameter = "gamma"  # x ** gamma: darker mid-tones
    ladders = {"default": (1.1, 1.2, 1.3, 1.4, 1.6)}

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        import kornia  # imported on use: it costs most of a second at start-up
        return kornia.enhance.adjust_gamma(x, float(params["gamma"]))


class WhiteBalance(Corruption):
    name = "white-balance"
    title = "Colour cast (white balance)"
    modalities = ("dermoscopy", "histopathology")
    reference = (f"a warm colour cast (red gain 1 + s, blue gain 1 - s); ladder: medaudit's, with the magnitudes "
                 f"of {MEDMNIST_C} 'saturate' for PathMNIST")
    library = "torch"
    parameter = "shift"
    ladders = {"default": (0.05, 0.10, 0.15, 0.20, 0.25)}
    channels = (3,)

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        if x.shape[1] != 3:
            raise UsageError(f"corruption '{self.name}' needs 3-channel (RGB) images, not {x.shape[1]}")
        s = float(params["shift"])
        gains = torch.tensor([1 + s, 1.0, 1 - s], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return x * gains


class Haze(Corruption):
    name = "haze"
    title = "Haze (veiling glare, low contrast)"
    modalities = ("fundoscopy",)
    reference = f"{SHEN_2020}; ladder: medaudit's (veil of 10% to 50% white light)"
    library = "torch"
    parameter = "veil"  # x -> (1 - veil) x + veil
    ladders = {"default": (0.1, 0.2, 0.3, 0.4, 0.5)}

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        veil = float(params["veil"])
        return (1 - veil) * x + veil


class UnevenIllumination(Corruption):
    name = "uneven-illumination"
    title = "Uneven illumination"
    modalities = ("fundoscopy",)
    reference = (f"{SHEN_2020}; a linear luminance ramp in a random direction per image that darkens the far "
                 "side by the given fraction; ladder: medaudit's")
    library = "torch"
    parameter = "darkening"
    ladders = {"default": (0.2, 0.3, 0.4, 0.5, 0.6)}

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        n, _, h, w = x.shape
        angle = uniform_per_image(x, seeds, 0.0, 2 * math.pi).view(n, 1, 1)
        yy = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, h, 1)
        xx = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, w)
        ramp = (xx * torch.cos(angle) + yy * torch.sin(angle)) / math.sqrt(2)  # in [-1, 1]
        field = 1 - float(params["darkening"]) * (0.5 + 0.5 * ramp)
        return x * field.unsqueeze(1)

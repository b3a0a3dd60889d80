"""Optics and resolution: defocus blur (a disk kernel), motion blur (a line kernel at a
random angle per image), Gaussian blur and pixelation, vectorised on the device with
kornia's filters.

Ladders: Hendrycks and Dietterich (ICLR 2019, ImageNet-C) for the generic ones, Di Salvo et
al. (2024, MedMNIST-C) per data set. Both give kernel sizes in pixels of 224-pixel images;
medaudit scales them to the audited size (``scale`` in each severity's parameters), so a
blur covers the same fraction of the image at 28 or 224 pixels. At very small sizes the
mildest blurs become sub-pixel, which results.json shows in the derived kernel sizes.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from auditor.interfaces import Corruption
from plugins.corruptions._common import odd_kernel, uniform_per_image
from plugins.corruptions.noise import IMAGENET_C, MEDMNIST_C


class DefocusBlur(Corruption):
    name = "defocus-blur"
    title = "Defocus blur"
    modalities = ("dermoscopy", "fundoscopy", "histopathology", "oct")
    reference = f"{IMAGENET_C}; DermaMNIST and RetinaMNIST ladders from {MEDMNIST_C}"
    library = "kornia.filters.filter2d (disk kernel, Gaussian alias blur)"
    parameter = "radius_alias"  # (disk radius in 224-px pixels, alias blur sigma)
    ladders = {"default": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
               "dermoscopy": ((4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)),
               "fundoscopy": ((4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5))}
    spatial = True

    def parameters(self, severity: int, modality: str, size: tuple[int, int]) -> dict[str, Any]:
        params = super().parameters(severity, modality, size)
        if severity > 0:
            params["radius_px"] = params["radius_alias"][0] * params["scale"]
        return params

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        import kornia  # imported on use: it costs most of a second at start-up
        radius = float(params["radius_px"])
        half = max(int(math.ceil(radius)), 1)
        grid = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
        distance = torch.sqrt(grid.view(-1, 1) ** 2 + grid.view(1, -1) ** 2)
        # anti-aliased edge: a sub-pixel radius (small images) still blurs a little, monotonically
        disk = (radius + 0.5 - distance).clamp(0, 1)
        alias = float(params["radius_alias"][1]) * params["scale"]
        kernel = disk / disk.sum()
        if alias > 0:
            kernel = kornia.filters.gaussian_blur2d(kernel[None, None], (3, 3), (alias, alias))[0, 0]
        return kornia.filters.filter2d(x, (kernel / kernel.sum())[None], border_type="reflect")


class MotionBlur(Corruption):
    name = "motion-blur"
    title = "Motion blur"
    modalities = ("dermoscopy",)
    reference = (f"{IMAGENET_C}; DermaMNIST ladder from {MEDMNIST_C} (radius, sigma); the line kernel spans "
                 "2 sigma, at an angle uniform in [-45, 45] degrees per image")
    library = "kornia.filters.motion_blur"
    parameter = "radius_sigma"
    ladders = {"default": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
               "dermoscopy": ((10, 5), (15, 5), (15, 8), (15, 12), (20, 15))}
    spatial = True

    def parameters(self, severity: int, modality: str, size: tuple[int, int]) -> dict[str, Any]:
        params = super().parameters(severity, modality, size)
        if severity > 0:
            params["kernel_size"] = odd_kernel(2 * params["radius_sigma"][1] * params["scale"] + 1)
        return params

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        import kornia  # imported on use: it costs most of a second at start-up
        angle = uniform_per_image(x, seeds, -45.0, 45.0)
        return kornia.filters.motion_blur(x, int(params["kernel_size"]), angle, torch.zeros_like(angle),
                                          border_type="reflect")


class GaussianBlur(Corruption):
    name = "gaussian-blur"
    title = "Gaussian blur"
    modalities = ("chest-xray", "ultrasound")
    reference = (f"{IMAGENET_C} (sigma 1-6 px); PneumoniaMNIST ladder from {MEDMNIST_C} (kernel 3-11 px, "
                 "sigma = 0.3 ((k - 1) / 2 - 1) + 0.8 as torchvision derives it)")
    library = "kornia.filters.gaussian_blur2d"
    parameter = "sigma"  # in 224-px pixels
    ladders = {"default": (1.0, 2.0, 3.0, 4.0, 6.0), "chest-xray": (0.8, 1.1, 1.4, 1.7, 2.0)}
    spatial = True

    def parameters(self, severity: int, modality: str, size: tuple[int, int]) -> dict[str, Any]:
        params = super().parameters(severity, modality, size)
        if severity > 0:
            params["sigma_px"] = params["sigma"] * params["scale"]
            params["kernel_size"] = odd_kernel(6 * params["sigma_px"] + 1)
        return params

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        import kornia  # imported on use: it costs most of a second at start-up
        k, sigma = int(params["kernel_size"]), float(params["sigma_px"])
        return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


class Pixelate(Corruption):
    name = "pixelate"
    title = "Reduced resolution (pixelate)"
    modalities = ("chest-xray",)
    reference = f"{IMAGENET_C}; PneumoniaMNIST ladder from {MEDMNIST_C}"
    library = "torch.nn.functional.interpolate (area down, nearest up)"
    parameter = "factor"  # fraction of the side kept
    ladders = {"default": (0.6, 0.5, 0.4, 0.3, 0.25), "chest-xray": (0.8, 0.7, 0.6, 0.5, 0.4)}

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        h, w = x.shape[-2:]
        f = float(params["factor"])
        small = F.interpolate(x, size=(max(1, round(h * f)), max(1, round(w * f))), mode="area")
        return F.interpolate(small, size=(h, w), mode="nearest")

"""JPEG compression at a quality factor (Pillow), one image at a time.

Ladders: Hendrycks and Dietterich (ICLR 2019, ImageNet-C) and, per data set, Di Salvo et
al. (2024, MedMNIST-C). Deterministic: JPEG draws nothing at random.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from auditor.interfaces import Corruption
from plugins.corruptions.noise import IMAGENET_C, MEDMNIST_C
from plugins.defenses.jpeg import jpeg_roundtrip


class Jpeg(Corruption):
    name = "jpeg"
    title = "JPEG compression"
    modalities = ("dermoscopy", "fundoscopy", "chest-xray", "ultrasound", "histopathology")
    reference = f"{IMAGENET_C}; per-modality ladders from {MEDMNIST_C}"
    library = "Pillow (baseline JPEG, 4:2:0 for RGB)"
    parameter = "quality"
    ladders = {"default": (25, 18, 15, 10, 7), "dermoscopy": (30, 20, 15, 10, 7),
               "fundoscopy": (30, 25, 20, 10, 5), "chest-xray": (50, 30, 15, 10, 7)}
    vectorised = False

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        return jpeg_roundtrip(x, int(params["quality"]))

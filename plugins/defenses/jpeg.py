"""JPEG compression in front of the model.

Dziugaite et al., "A study of the effect of JPG compression on adversarial images" (2016);
Das et al., "Keeping the Bad Guys Out" (2017). Each image is quantised to 8 bits, encoded
as a baseline JPEG at ``quality`` (1-95, default 75; 4:2:0 chroma subsampling for RGB, as
ART's ``JpegCompression`` and most deployed pipelines do) and decoded again.

Not differentiable (the gradient through quantisation is zero almost everywhere):
adaptive evaluation uses BPDA with the identity (Athalye et al., ICML 2018). Deterministic.

Example::

    medaudit run model.pt --data test/ --defense jpeg:quality=75
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from PIL import Image

from plugins.defenses._common import Param, PreprocessingDefense


def jpeg_roundtrip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """(N, C, H, W) in [0,1] -> the same after a JPEG encode/decode at ``quality``.
    One- and three-channel images are coded as greyscale / RGB; other channel counts
    channel by channel as greyscale."""
    arr = (x.detach().float().clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
    out = np.empty_like(arr)
    for i, image in enumerate(arr):
        planes = [image.transpose(1, 2, 0)] if image.shape[0] == 3 else [p for p in image]
        decoded = []
        for plane in planes:
            buf = io.BytesIO()
            Image.fromarray(plane).save(buf, format="JPEG", quality=int(quality))
            buf.seek(0)
            decoded.append(np.asarray(Image.open(buf).convert("RGB" if plane.ndim == 3 else "L")))
        out[i] = decoded[0].transpose(2, 0, 1) if image.shape[0] == 3 else np.stack(decoded)
    return torch.from_numpy(out).to(device=x.device, dtype=x.dtype) / 255.0


class JpegCompression(torch.nn.Module):
    def __init__(self, quality: int) -> None:
        super().__init__()
        self.quality = quality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return jpeg_roundtrip(x, self.quality)

    def extra_repr(self) -> str:
        return f"quality={self.quality}"


class Jpeg(PreprocessingDefense):
    name = "jpeg"
    description = "JPEG compression (encode/decode at a quality factor)"
    differentiable = False
    randomized = False
    reference = "Dziugaite et al. 2016; Das et al. 2017"
    params = {"quality": Param(int, 75, 1, 95, "JPEG quality factor")}

    def make(self, params: dict[str, Any]) -> torch.nn.Module:
        return JpegCompression(params["quality"])

"""A toy segmentation task for the hardening test: a brighter square on a noisy
background, its mask the square. Small enough to train a tiny U-Net in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SIZE = 16


def seg_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = 0.4 + rng.normal(0, 0.08, (n, SIZE, SIZE))
    masks = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    for i in range(n):
        side = int(rng.integers(5, 9))
        top, left = rng.integers(0, SIZE - side, 2)
        masks[i, top : top + side, left : left + side] = 1
    images = images + 0.2 * masks
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8), masks


def write_seg_folders(root: Path, n: int = 80, seed: int = 0) -> Path:
    images, masks = seg_arrays(n, seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i, (img, mask) in enumerate(zip(images, masks)):
        Image.fromarray(img).save(root / "images" / f"s{i:03d}.png")
        Image.fromarray(mask * 255).save(root / "masks" / f"s{i:03d}.png")
    return root


def train_toy_unet(root: Path, epochs: int = 40, seed: int = 0) -> torch.nn.Module:
    from auditor.architectures import UNet

    names = sorted((root / "images").glob("*.png"))
    x = torch.stack([torch.from_numpy(np.array(Image.open(p))).float().div(255)[None] for p in names])
    y = torch.stack([torch.from_numpy(np.array(Image.open(root / "masks" / p.name)) > 0).float()[None] for p in names])
    torch.manual_seed(seed)
    model = UNet(in_channels=1, out_channels=1, width=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(x), 16):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(model(x[i : i + 16]), y[i : i + 16]).backward()
            opt.step()
    return model.eval()

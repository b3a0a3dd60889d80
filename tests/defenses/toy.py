"""A toy task with a robust and a non-robust signal (Tsipras et al., "Robustness May Be at
Odds with Accuracy", ICLR 2019): one strong but noisy pixel, and many weak pixels that
together predict the label almost perfectly but can be flipped by a small L-inf budget.
Standard training leans on the weak pixels; adversarial training must use the strong one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

SIZE = 8
WEAK = 0.06  # weak pixels: 0.5 +- WEAK; an L-inf budget above it flips all of them
STRONG = 0.35  # the strong pixel: 0.5 +- STRONG, with the sign wrong for 10% of images
EPS_255 = 24.0  # the budget the tests attack with (> WEAK, < STRONG)


def toy_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    sign = 2.0 * labels - 1.0
    images = 0.5 + WEAK * sign[:, None, None] + rng.normal(0, 0.1, (n, SIZE, SIZE))
    flip = np.where(rng.random(n) < 0.1, -1.0, 1.0)
    images[:, 0, 0] = 0.5 + STRONG * sign * flip
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8), labels.astype(np.int64)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div(255.0)[:, None]


class ToyMLP(nn.Module):
    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_toy(seed: int = 0, n: int = 600, epochs: int = 30) -> ToyMLP:
    from auditor.training import train_classifier

    torch.manual_seed(seed)
    images, labels = toy_arrays(n, seed)
    model = ToyMLP()
    return train_classifier(model, to_tensor(images), torch.from_numpy(labels), epochs=epochs, batch_size=64,
                            lr=3e-3, seed=seed)


def write_npz(path: Path, seed: int = 0) -> Path:
    arrays = {}
    for i, split in enumerate(("train", "val", "test")):
        images, labels = toy_arrays((600, 100, 200)[i], seed + i)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels[:, None]
    np.savez(path, **arrays)
    return path


def write_folder(path: Path, n: int = 40, seed: int = 5) -> Path:
    images, labels = toy_arrays(n, seed)
    for label in (0, 1):
        (path / f"class{label}").mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(images, labels)):
        Image.fromarray(img).save(path / f"class{label}" / f"img_{i:03d}.png")
    return path

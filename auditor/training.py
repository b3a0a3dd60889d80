"""Plain supervised training for the demo, examples and test fixtures.

Not part of an audit: medaudit audits models it is given. These helpers exist so the demo
and the real-data tests can make a small, honestly trained model offline and seeded.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def train_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    weight_decay: float = 1e-4,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    class_weights: torch.Tensor | None = None,
) -> nn.Module:
    """Adam on cross-entropy; deterministic for a seed on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights)
    n = len(images)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x = images[idx]
            if augment is not None:
                x = augment(x, gen)
            opt.zero_grad()
            loss = loss_fn(model(x), labels[idx])
            loss.backward()
            opt.step()
    return model.eval()


def flip_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal and vertical flips (lesion images have no canonical orientation)."""
    if torch.rand(1, generator=gen).item() < 0.5:
        x = x.flip(3)
    if torch.rand(1, generator=gen).item() < 0.5:
        x = x.flip(2)
    return x


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 128) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        correct += int((model(images[start : start + batch_size]).argmax(1) == labels[start : start + batch_size]).sum())
    return correct / max(len(images), 1)

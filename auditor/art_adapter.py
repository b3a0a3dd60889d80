"""The thin boundary to IBM's adversarial-robustness-toolbox (ART).

numpy conversions happen here and nowhere else. ART's misleading defaults (eps 0.3,
verbose progress bars, DLR on two-class models) are never relied upon: every attack
passes every parameter explicitly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from auditor.interfaces import AttackContext

# ART logs a line per attack at INFO; the CLI has its own progress display.
logging.getLogger("art").setLevel(logging.WARNING)


def art_classifier(ctx: "AttackContext") -> Any:
    """ART ``PyTorchClassifier`` around the context's model, built on first use per context."""
    if ctx._art is None:  # noqa: SLF001 - the context's cache slot for this adapter
        ctx._art = make_art_classifier(ctx)  # noqa: SLF001
    return ctx._art  # noqa: SLF001


def make_art_classifier(ctx: "AttackContext") -> Any:
    from art.estimators.classification import PyTorchClassifier

    device_type = "gpu" if ctx.device.type == "cuda" else "cpu"
    classifier = PyTorchClassifier(
        model=ctx.model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(ctx.input_shape),
        nb_classes=ctx.num_classes,
        clip_values=(0.0, 1.0),
        device_type=device_type,
    )
    # ART picks cuda:0 for "gpu"; honour an explicit cuda:N.
    if ctx.device.type == "cuda":
        classifier._device = ctx.device  # noqa: SLF001 - ART has no public setter
        classifier._model.to(ctx.device)  # noqa: SLF001
    return classifier


def to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float32, copy=False)


def from_numpy(x: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(like.device)


def one_hot(y: torch.Tensor, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[y.detach().cpu().numpy()]


def seed_everything(seed: int) -> None:
    """ART draws from numpy's global generator; seed it along with torch's."""
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)

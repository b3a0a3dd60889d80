"""Shared core of the segmentation metrics: label maps from logits and per-class counts.

Every metric works on integer label maps (N, H, W) with 0 = background, so the pure
``compute_*`` functions are trivially testable by hand. A region of interest (N, H, W)
bool restricts every count to the pixels inside it (e.g. a fundus field of view).
"""

from __future__ import annotations

import torch

from auditor.numerics import class_counts, logits_to_labels  # noqa: F401 - the metrics' counting rules


def num_classes_of(logits: torch.Tensor) -> int:
    """Number of classes a logit map encodes: 2 for a single (sigmoid) channel."""
    return 2 if logits.shape[1] == 1 else int(logits.shape[1])


def mean_over_present(scores: torch.Tensor, present: torch.Tensor, when_none: float) -> torch.Tensor:
    """Per-image mean of ``scores`` (N, C) over the classes marked ``present``; ``when_none``
    for an image where no class is present."""
    present = present.to(scores.dtype)
    total = (torch.nan_to_num(scores) * present).sum(1)
    count = present.sum(1)
    out = total / count.clamp(min=1)
    return torch.where(count > 0, out, torch.full_like(out, when_none))


def nanmean(values: torch.Tensor) -> float:
    """Mean over the finite values; NaN when there are none."""
    values = values.double()
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else float("nan")

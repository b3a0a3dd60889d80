"""Shared core of the segmentation metrics: label maps from logits and per-class counts.

Every metric works on integer label maps (N, H, W) with 0 = background, so the pure
``compute_*`` functions are trivially testable by hand. A region of interest (N, H, W)
bool restricts every count to the pixels inside it (e.g. a fundus field of view).
"""

from __future__ import annotations

import torch


def logits_to_labels(logits: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) logits -> foreground where logit >= 0 (sigmoid >= 0.5, ties to foreground,
    as most reference code thresholds with ``>=``); (N, K, H, W) -> argmax over classes."""
    if logits.dim() != 4:
        raise ValueError(f"segmentation logits must be (N, K, H, W), got {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        return (logits[:, 0] >= 0).long()
    return logits.argmax(dim=1)


def num_classes_of(logits: torch.Tensor) -> int:
    """Number of classes a logit map encodes: 2 for a single (sigmoid) channel."""
    return 2 if logits.shape[1] == 1 else int(logits.shape[1])


def class_counts(
    pred: torch.Tensor, target: torch.Tensor, roi: torch.Tensor | None, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives and false negatives per image and foreground class.

    ``pred`` and ``target`` are (N, H, W) integer maps; returns three (N, K-1) float64
    tensors for classes 1..K-1, counted inside ``roi`` when given."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if roi is not None and roi.shape != target.shape:
        raise ValueError(f"roi {tuple(roi.shape)} and target {tuple(target.shape)} differ in shape")
    inside = roi.bool() if roi is not None else torch.ones_like(target, dtype=torch.bool)
    tps, fps, fns = [], [], []
    for c in range(1, max(int(num_classes), 2)):
        p = (pred == c) & inside
        t = (target == c) & inside
        tps.append((p & t).flatten(1).sum(1))
        fps.append((p & ~t).flatten(1).sum(1))
        fns.append((~p & t).flatten(1).sum(1))
    stack = lambda xs: torch.stack(xs, dim=1).double()  # noqa: E731
    return stack(tps), stack(fps), stack(fns)


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

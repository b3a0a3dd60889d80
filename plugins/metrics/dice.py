"""Dice similarity coefficient (Sorensen-Dice, F1 of the foreground pixels).

``Dice = 2 TP / (2 TP + FP + FN)`` per image, inside the region of interest when one is
given. Binary masks: the foreground class. K classes: the mean over the foreground
classes 1..K-1 that appear in the ground truth or the prediction.

Empty ground truth: a class absent from both the ground truth and the prediction is left
out of the mean, and an image where no foreground class appears at all scores **1** (the
model correctly found nothing). An image whose ground truth is empty but whose
prediction is not scores **0**.
"""

from __future__ import annotations

import torch

from auditor.interfaces import Metric
from plugins.metrics._common import class_counts, logits_to_labels, mean_over_present, num_classes_of


def compute_dice(
    pred: torch.Tensor, target: torch.Tensor, roi: torch.Tensor | None = None, num_classes: int = 2
) -> torch.Tensor:
    """Per-image Dice, (N,) float64, from (N, H, W) label maps (see the module docstring)."""
    tp, fp, fn = class_counts(pred, target, roi, num_classes)
    denominator = 2 * tp + fp + fn
    per_class = 2 * tp / denominator.clamp(min=1)
    return mean_over_present(per_class, denominator > 0, when_none=1.0)


class DiceMetric(Metric):
    name = "dice"
    task = "segmentation"
    description = "Dice coefficient of the foreground (mean over foreground classes), inside the ROI"
    higher_is_better = True

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, roi: torch.Tensor | None = None) -> torch.Tensor:
        return compute_dice(logits_to_labels(logits), targets, roi, num_classes_of(logits))

    def aggregate(self, values: torch.Tensor) -> float:
        return float(values.double().mean()) if values.numel() else float("nan")

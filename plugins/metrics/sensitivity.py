"""Sensitivity (recall) of the lesion pixels.

``TP / (TP + FN)`` per image: the fraction of true lesion pixels the model marks, inside
the region of interest. K classes: the mean over the foreground classes present in the
ground truth. An image without lesion pixels has no sensitivity: NaN, left out when
aggregating.
"""

from __future__ import annotations

import torch

from auditor.interfaces import Metric
from plugins.metrics._common import class_counts, logits_to_labels, mean_over_present, nanmean, num_classes_of


def compute_sensitivity(
    pred: torch.Tensor, target: torch.Tensor, roi: torch.Tensor | None = None, num_classes: int = 2
) -> torch.Tensor:
    """Per-image lesion-pixel sensitivity, (N,) float64; NaN where the ground truth is empty."""
    tp, _, fn = class_counts(pred, target, roi, num_classes)
    positives = tp + fn
    per_class = tp / positives.clamp(min=1)
    return mean_over_present(per_class, positives > 0, when_none=float("nan"))


class SensitivityMetric(Metric):
    name = "sensitivity"
    task = "segmentation"
    description = "fraction of true lesion pixels predicted as lesion, inside the ROI"
    higher_is_better = True

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, roi: torch.Tensor | None = None) -> torch.Tensor:
        return compute_sensitivity(logits_to_labels(logits), targets, roi, num_classes_of(logits))

    def aggregate(self, values: torch.Tensor) -> float:
        return nanmean(values)

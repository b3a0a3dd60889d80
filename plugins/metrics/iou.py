"""Intersection over union (Jaccard index).

``IoU = TP / (TP + FP + FN)`` per image, inside the region of interest when one is given.
Binary masks: the foreground class; K classes: the mean IoU over the foreground classes
1..K-1 that appear in the ground truth or the prediction. Averaged over images this is
the mIoU of segmentation papers. Empty ground truth follows the Dice convention: 1 when
the prediction is empty too, else 0 (see :mod:`plugins.metrics.dice`).
"""

from __future__ import annotations

import torch

from auditor.interfaces import Metric
from plugins.metrics._common import class_counts, logits_to_labels, mean_over_present, num_classes_of


def compute_iou(
    pred: torch.Tensor, target: torch.Tensor, roi: torch.Tensor | None = None, num_classes: int = 2
) -> torch.Tensor:
    """Per-image (mean) IoU, (N,) float64, from (N, H, W) label maps."""
    tp, fp, fn = class_counts(pred, target, roi, num_classes)
    union = tp + fp + fn
    per_class = tp / union.clamp(min=1)
    return mean_over_present(per_class, union > 0, when_none=1.0)


class IoUMetric(Metric):
    name = "iou"
    task = "segmentation"
    description = "intersection over union of the foreground (mean over foreground classes), inside the ROI"
    higher_is_better = True

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, roi: torch.Tensor | None = None) -> torch.Tensor:
        return compute_iou(logits_to_labels(logits), targets, roi, num_classes_of(logits))

    def aggregate(self, values: torch.Tensor) -> float:
        return float(values.double().mean()) if values.numel() else float("nan")

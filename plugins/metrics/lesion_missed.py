"""Lesion missed: the predicted lesion area falls below a fraction of the true one.

An image counts as missed (1.0) when the area the model marks as lesion (any foreground
class), inside the region of interest, is smaller than ``missed_fraction`` (default 0.5)
times the true lesion area. A missed lesion is the clinical failure a segmentation attack
aims at (see ``seg-lesion-removal``). The area is compared as a whole, not where it lies.
An image without a true lesion cannot miss one: NaN, left out of the rate.
"""

from __future__ import annotations

import torch

from auditor.interfaces import Metric
from auditor.numerics import DEFAULT_MISSED_FRACTION, lesion_areas  # noqa: F401 - re-exported
from plugins.metrics._common import logits_to_labels, nanmean


def compute_lesion_missed(
    pred: torch.Tensor, target: torch.Tensor, roi: torch.Tensor | None = None,
    missed_fraction: float = DEFAULT_MISSED_FRACTION,
) -> torch.Tensor:
    """Per image 1.0 (missed), 0.0 (found) or NaN (no true lesion), (N,) float64."""
    if not 0.0 < missed_fraction <= 1.0:
        raise ValueError(f"missed_fraction must be in (0, 1], not {missed_fraction}")
    predicted, true = lesion_areas(pred, target, roi)
    missed = (predicted < missed_fraction * true).double()
    return torch.where(true > 0, missed, torch.full_like(missed, float("nan")))


class LesionMissedMetric(Metric):
    name = "lesion_missed"
    task = "segmentation"
    description = "rate of images whose predicted lesion area is under missed_fraction of the true area"
    higher_is_better = False

    def __init__(self, missed_fraction: float = DEFAULT_MISSED_FRACTION) -> None:
        if not 0.0 < missed_fraction <= 1.0:
            raise ValueError(f"missed_fraction must be in (0, 1], not {missed_fraction}")
        self.missed_fraction = float(missed_fraction)

    def configured(self, **options: object) -> "LesionMissedMetric":
        fraction = options.get("missed_fraction")
        return self if fraction is None else LesionMissedMetric(float(fraction))  # type: ignore[arg-type]

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, roi: torch.Tensor | None = None) -> torch.Tensor:
        return compute_lesion_missed(logits_to_labels(logits), targets, roi, self.missed_fraction)

    def aggregate(self, values: torch.Tensor) -> float:
        return nanmean(values)

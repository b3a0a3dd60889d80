"""The segmentation metrics as pure functions, checked against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from plugins.metrics import (DiceMetric, IoUMetric, LesionMissedMetric, SensitivityMetric, compute_dice,
                             compute_iou, compute_lesion_missed, compute_sensitivity)
from plugins.metrics._common import logits_to_labels


def maps(*rows: list[int]) -> torch.Tensor:
    """(N, 1, W) label maps, one image per row."""
    return torch.tensor([[row] for row in rows], dtype=torch.int64)


# pred 1 1 0 0 / target 1 0 1 0: TP 1, FP 1, FN 1
PRED = maps([1, 1, 0, 0])
TARGET = maps([1, 0, 1, 0])


def test_binary_values_by_hand():
    assert compute_dice(PRED, TARGET).tolist() == [pytest.approx(2 / 4)]
    assert compute_iou(PRED, TARGET).tolist() == [pytest.approx(1 / 3)]
    assert compute_sensitivity(PRED, TARGET).tolist() == [pytest.approx(1 / 2)]
    assert compute_lesion_missed(PRED, TARGET).tolist() == [0.0]  # area 2 is not below 0.5 * 2


def test_roi_restricts_every_count():
    roi = torch.tensor([[[True, False, True, True]]])  # drops the false positive
    assert compute_dice(PRED, TARGET, roi).item() == pytest.approx(2 / 3)
    assert compute_iou(PRED, TARGET, roi).item() == pytest.approx(1 / 2)
    assert compute_sensitivity(PRED, TARGET, roi).item() == pytest.approx(1 / 2)
    # predicted area inside the ROI is 1, true area 2: 1 < 0.5 * 2 is false, 1 < 0.6 * 2 is true
    assert compute_lesion_missed(PRED, TARGET, roi).item() == 0.0
    assert compute_lesion_missed(PRED, TARGET, roi, missed_fraction=0.6).item() == 1.0


def test_empty_ground_truth_convention():
    empty = maps([0, 0, 0, 0])
    some = maps([0, 1, 0, 0])
    # both empty: the model correctly found nothing
    assert compute_dice(empty, empty).item() == 1.0 and compute_iou(empty, empty).item() == 1.0
    # empty truth, non-empty prediction: a false alarm
    assert compute_dice(some, empty).item() == 0.0 and compute_iou(some, empty).item() == 0.0
    # no lesion: no sensitivity and nothing to miss
    assert math.isnan(compute_sensitivity(some, empty).item())
    assert math.isnan(compute_lesion_missed(some, empty).item())
    # a lesion predicted as empty: missed, Dice and sensitivity 0
    assert compute_dice(empty, some).item() == 0.0
    assert compute_sensitivity(empty, some).item() == 0.0
    assert compute_lesion_missed(empty, some).item() == 1.0


def test_multiclass_means_over_present_foreground_classes():
    pred = maps([0, 1, 2, 2])
    target = maps([0, 1, 1, 2])
    # class 1: TP 1 FP 0 FN 1 -> Dice 2/3, IoU 1/2, recall 1/2; class 2: TP 1 FP 1 FN 0 -> 2/3, 1/2, 1
    assert compute_dice(pred, target, num_classes=3).item() == pytest.approx(2 / 3)
    assert compute_iou(pred, target, num_classes=3).item() == pytest.approx(1 / 2)
    assert compute_sensitivity(pred, target, num_classes=3).item() == pytest.approx(3 / 4)
    # a fourth class absent from both maps does not enter the mean
    assert compute_dice(pred, target, num_classes=4).item() == pytest.approx(2 / 3)
    # lesion missed looks at the foreground as a whole: 3 predicted vs 3 true pixels
    assert compute_lesion_missed(pred, target).item() == 0.0


def test_per_image_values_in_a_batch():
    pred = maps([1, 1, 0, 0], [0, 0, 0, 0])
    target = maps([1, 0, 1, 0], [0, 0, 1, 1])
    assert compute_dice(pred, target).tolist() == [pytest.approx(0.5), 0.0]
    assert compute_lesion_missed(pred, target).tolist() == [0.0, 1.0]


def test_metric_classes_threshold_logits_at_zero_and_aggregate():
    logits = torch.tensor([[[[0.0, 2.0, -1.0, -3.0]]]])  # one channel; 0 counts as foreground
    assert logits_to_labels(logits).tolist() == [[[1, 1, 0, 0]]]
    assert DiceMetric().compute(logits, TARGET).item() == pytest.approx(0.5)
    assert IoUMetric().compute(logits, TARGET).item() == pytest.approx(1 / 3)
    k_logits = torch.tensor([[[[3.0, 0.0]], [[1.0, 2.0]], [[0.0, 5.0]]]])  # (1, 3, 1, 2): argmax 0, 2
    assert logits_to_labels(k_logits).tolist() == [[[0, 2]]]
    values = torch.tensor([0.5, float("nan"), 1.0], dtype=torch.float64)
    assert SensitivityMetric().aggregate(values) == pytest.approx(0.75)
    assert LesionMissedMetric().aggregate(torch.tensor([float("nan")])) != LesionMissedMetric().aggregate(
        torch.tensor([float("nan")]))  # NaN: no lesion-bearing image at all
    assert DiceMetric().aggregate(torch.tensor([0.5, 1.0])) == pytest.approx(0.75)


def test_missed_fraction_is_validated():
    with pytest.raises(ValueError):
        LesionMissedMetric(missed_fraction=0.0)
    with pytest.raises(ValueError):
        compute_lesion_missed(PRED, TARGET, missed_fraction=1.5)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        compute_dice(PRED, maps([1, 0, 1]))


def test_plugin_registers_the_metrics(registry):
    metrics = registry.components["metrics"]
    assert {"dice", "iou", "sensitivity", "lesion_missed"} <= set(metrics)
    assert all(metrics[n].component.task == "segmentation" for n in ("dice", "iou", "sensitivity", "lesion_missed"))
    assert metrics["dice"].plugin == "plugins.metrics"

"""Built-in metrics plugin: segmentation metrics, one module each (MONAI naming: a pure
``compute_xxx`` function next to an ``XxxMetric`` class)."""

from auditor.hookspecs import hookimpl
from plugins.metrics.dice import DiceMetric, compute_dice
from plugins.metrics.iou import IoUMetric, compute_iou
from plugins.metrics.lesion_missed import DEFAULT_MISSED_FRACTION, LesionMissedMetric, compute_lesion_missed
from plugins.metrics.sensitivity import SensitivityMetric, compute_sensitivity

__all__ = [
    "DEFAULT_MISSED_FRACTION", "DiceMetric", "IoUMetric", "LesionMissedMetric", "SensitivityMetric",
    "compute_dice", "compute_iou", "compute_lesion_missed", "compute_sensitivity",
]


@hookimpl
def medaudit_register_metrics(register):
    for metric in (DiceMetric(), IoUMetric(), SensitivityMetric(), LesionMissedMetric()):
        register(metric)

"""Check 11: a classifier that does not classify (one class for everything, chance-level
ranking, never confident) fails the checks, whatever its robustness numbers say."""

from __future__ import annotations

import numpy as np

from auditor.evaluation.checks import check_degenerate, summarise_checks
from tests.checks.conftest import status_of


def _probs(preds: np.ndarray, top: float, k: int = 2) -> np.ndarray:
    probs = np.full((len(preds), k), (1 - top) / (k - 1))
    probs[np.arange(len(preds)), preds] = top
    return probs


def test_one_class_for_everything_fails():
    labels = np.array([0] * 234 + [1] * 390)  # pneumoniamnist's test split
    preds = np.ones_like(labels)
    result = check_degenerate(labels, preds, _probs(preds, 0.9), 2)
    assert result["status"] == "fail"
    assert "100% of predictions are class 1" in result["message"]
    assert result["numbers"]["balanced_accuracy"]["value"] == 0.5


def test_chance_level_balanced_accuracy_fails_only_when_the_interval_says_so():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3], 250)
    preds = rng.integers(0, 4, size=labels.size)  # guesses: 25% recall per class
    assert check_degenerate(labels, preds, _probs(preds, 0.9, 4), 4)["status"] == "fail"
    few = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    guesses = np.array([0, 1, 1, 2, 2, 3, 3, 0])  # balanced accuracy 0.5 on 8 images: too few to call it
    assert check_degenerate(few, guesses, _probs(guesses, 0.9, 4), 4)["status"] != "fail"


def test_never_confident_fails():
    labels = np.array([0, 1] * 50)
    preds = labels.copy()  # right every time, but at 52%: the logits are all but equal
    result = check_degenerate(labels, preds, _probs(preds, 0.52), 2)
    assert result["status"] == "fail" and "top probability stays below 0.60" in result["message"]


def test_a_working_classifier_on_imbalanced_data_passes():
    labels = np.array([0] * 10 + [1] * 190)
    preds = labels.copy()
    preds[:3] = 1  # 96.5% of predictions are class 1, but its true share is 95%: the data, not the model
    preds[-3:] = 0
    assert check_degenerate(labels, preds, _probs(preds, 0.95), 2)["status"] == "pass"


def test_a_failed_check_makes_the_verdict_fail():
    labels = np.array([0, 1] * 20)
    item = check_degenerate(labels, np.zeros_like(labels), _probs(np.zeros_like(labels), 0.8), 2)
    assert summarise_checks([item])["verdict"] == "fail"


def test_constant_model_audit_fails_the_check(audited):
    results = audited("constant")
    assert status_of(results)["degenerate"] == "fail"
    assert results["checks"]["verdict"] == "fail"
    assert status_of(audited("honest"))["degenerate"] == "pass"

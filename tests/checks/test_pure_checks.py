"""Checks that need no model: class count (10) and monotonicity (4)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from auditor.evaluation.checks import check_class_count, check_monotone_sequences, skipped_checks, summarise_checks
from plugins.attacks.autoattack import AutoAttack


def _autoattack_config(num_classes: int) -> dict:
    ctx = SimpleNamespace(num_classes=num_classes)
    return {"name": "autoattack", "params": AutoAttack().parameters("quick", ctx)}


@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_builtin_autoattack_adapts_to_the_class_count(num_classes):
    assert check_class_count([_autoattack_config(num_classes)], num_classes)["status"] == "pass"


def test_dlr_on_two_classes_fails():
    attacks = [{"name": "autoattack", "params": {"sub_attacks": ["apgd-ce", "apgd-dlr", "square"]}}]
    result = check_class_count(attacks, 2)
    assert result["status"] == "fail" and "at least 3 classes" in result["message"]
    assert check_class_count(attacks, 3)["status"] == "pass"


def test_targeted_dlr_needs_four_classes():
    attacks = [{"name": "aa-t", "params": {"sub_attacks": ["apgd-t"], "n_target_classes": 2}}]
    assert check_class_count(attacks, 3)["status"] == "fail"
    assert check_class_count(attacks, 4)["status"] == "pass"


def test_too_many_target_classes_fails():
    attacks = [{"name": "pgd-t", "params": {"loss": "ce", "targeted": True, "n_target_classes": 9}}]
    result = check_class_count(attacks, 5)
    assert result["status"] == "fail" and "9 target classes" in result["message"]


def test_a_sequence_that_rises_beyond_tolerance_fails():
    seq = {"pgd": [(2.0, 30, 100), (4.0, 20, 100), (8.0, 26, 100)]}
    result = check_monotone_sequences(seq, {"pgd"})
    assert result["status"] == "fail" and "rises by 6 samples" in result["message"]
    assert result["numbers"]["rises"][0]["from_eps_255"] == 4.0


def test_a_rise_within_tolerance_or_unjudged_passes():
    assert check_monotone_sequences({"pgd": [(2.0, 30, 100), (4.0, 32, 100)]}, {"pgd"})["status"] == "pass"
    assert check_monotone_sequences({"fgsm": [(2.0, 30, 100), (4.0, 60, 100)]}, set())["status"] == "pass"


def test_summary_verdict_is_the_worst_status():
    items = [{"status": "pass"}, {"status": "warn"}, {"status": "skipped"}]
    assert summarise_checks(items)["verdict"] == "warn"
    assert summarise_checks(items + [{"status": "fail"}])["summary"]["fail"] == 1
    assert skipped_checks("off")["verdict"] == "skipped"


def test_gradient_check_sees_zero_gradients_of_a_step_function():
    """The same mechanism as the quantised model, on a tensor: round() has zero gradient."""
    x = torch.rand(4, 3, requires_grad=True)
    (torch.round(x * 8) / 8).sum().backward()
    assert torch.count_nonzero(x.grad) == 0


def test_a_check_that_crashes_is_skipped_with_its_reason():
    from auditor.accounting import PassCounter
    from auditor.evaluation.checks import ValidityChecks

    checks = ValidityChecks.__new__(ValidityChecks)  # only the timing wrapper is exercised
    checks.audit = SimpleNamespace(counter=PassCounter())

    def broken():
        raise RuntimeError("boom\nsecond line")

    result = checks._timed(6, "black-box", broken)
    assert (result["id"], result["key"], result["status"]) == (6, "black-box", "skipped")
    assert result["message"] == "could not run: RuntimeError: boom" and "cost" in result

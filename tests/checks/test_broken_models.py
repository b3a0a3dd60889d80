"""Every validity check fires on the model built to break it, and none fires on an honest model."""

from __future__ import annotations

import json

import pytest

from auditor.results import read_results
from tests.checks.conftest import CHECK_SAMPLES, status_of

KEYS = ["logits", "gradients", "determinism", "monotone", "iterative", "black-box", "large-eps",
        "convergence", "noise", "class-count", "degenerate"]


def test_honest_model_passes_every_check(audited):
    results = audited("honest")
    checks = results["checks"]
    assert [item["key"] for item in checks["items"]] == KEYS
    assert [item["id"] for item in checks["items"]] == list(range(1, 12))
    bad = {item["key"]: item["message"] for item in checks["items"] if item["status"] != "pass"}
    assert not bad, bad
    assert checks["verdict"] == "pass" and checks["summary"]["pass"] == 11
    assert checks["subsample"]["n"] == min(CHECK_SAMPLES, results["clean"]["n_correct"])


def test_every_check_states_message_numbers_and_threshold(audited):
    for item in audited("honest")["checks"]["items"]:
        assert item["message"] and "\n" not in item["message"]
        assert item["numbers"], item["key"]
        assert item.get("threshold") or item.get("tolerance"), item["key"]
        assert set(item["cost"]) == {"time_s", "forward_samples", "backward_samples"}


def test_check_cost_is_counted(audited):
    checks = audited("honest")["checks"]
    assert checks["cost"]["backward_samples"] > 0
    assert checks["cost"]["forward_samples"] == sum(i["cost"]["forward_samples"] for i in checks["items"])


def test_quantised_input_masks_gradients(audited):
    """round(x*8)/8: zero input gradients (check 2) and PGD cannot move even at 64/255 (check 7);
    Square, noise and random restarts still break it (checks 6, 8, 9)."""
    results = audited("quantised")
    status = status_of(results)
    items = {i["key"]: i for i in results["checks"]["items"]}
    assert status["gradients"] == "fail"
    assert items["gradients"]["numbers"]["zero_ce_fraction"] == 1.0
    assert status["large-eps"] == "fail"
    assert items["large-eps"]["numbers"]["robust_accuracy"] == 1.0
    assert status["black-box"] == "fail"
    assert status["noise"] == "fail"
    assert status["logits"] == "pass" and status["determinism"] == "pass" and status["class-count"] == "pass"
    assert results["checks"]["verdict"] == "fail"


def test_noisy_model_is_not_deterministic(audited):
    results = audited("noisy")
    items = {i["key"]: i for i in results["checks"]["items"]}
    assert items["determinism"]["status"] == "fail"
    assert "EoT" in items["determinism"]["message"]
    assert items["determinism"]["numbers"]["max_abs_logit_diff"] > items["determinism"]["numbers"]["tolerance"]
    assert items["logits"]["status"] == "pass" and items["gradients"]["status"] == "pass"


def test_softmax_model_fails_the_logit_check(audited):
    results = audited("softmax")
    items = {i["key"]: i for i in results["checks"]["items"]}
    assert results["model"]["outputs"] == "probabilities"
    assert items["logits"]["status"] == "fail"
    assert items["logits"]["numbers"]["data_kind"] == "softmax"
    assert items["determinism"]["status"] == "pass"


def test_checks_are_in_results_json_and_reproducible(audited, check_workdir):
    results = audited("honest")
    on_disk = read_results(check_workdir["dir"] / "out-honest")
    assert on_disk["status"] == "complete"
    assert [i["status"] for i in on_disk["checks"]["items"]] == [i["status"] for i in results["checks"]["items"]]
    json.dumps(on_disk["checks"])  # plain JSON


@pytest.mark.parametrize("block", ["clean", "worst_case", "attacks"])
def test_every_accuracy_carries_a_wilson_interval(audited, block):
    results = audited("honest")
    rows = [results[block]] if block == "clean" else results[block]
    for row in rows:
        low, high = row["ci95"]
        value = row.get("accuracy", row.get("robust_accuracy"))
        assert row["ci_method"] == "wilson"
        assert 0 <= low <= value <= high <= 1


def test_independent_mode_uses_the_audits_own_per_attack_numbers(check_workdir):
    """With --independent, checks 5 and 6 compare the audit's own per-attack results on every sample."""
    import warnings

    from auditor.audit import run_audit
    from auditor.registry import get_registry
    from tests.checks.conftest import audit_config, one_thread

    config = audit_config(check_workdir, "honest", check_workdir["dir"] / "out-independent", mode="independent",
                          attacks=["fgsm", "pgd", "square"])
    with warnings.catch_warnings(), one_thread():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        results = run_audit(config, get_registry())
    items = {i["key"]: i for i in results["checks"]["items"]}
    assert items["iterative"]["numbers"]["source"].startswith("audit (independent mode")
    assert items["black-box"]["numbers"]["source"].startswith("audit (independent mode)")
    assert "pgd (audit, independent)" in items["monotone"]["numbers"]
    assert all(i["status"] == "pass" for i in items.values()), {k: i["message"] for k, i in items.items()}


def test_skip_checks_records_why(check_workdir):
    import warnings

    from auditor.audit import run_audit
    from auditor.registry import get_registry
    from tests.checks.conftest import audit_config, one_thread

    config = audit_config(check_workdir, "honest", check_workdir["dir"] / "out-skip", checks=False, attacks=["fgsm"])
    with warnings.catch_warnings(), one_thread():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        results = run_audit(config, get_registry())
    assert results["checks"]["verdict"] == "skipped" and "--skip-checks" in results["checks"]["reason"]
    assert results["checks"]["items"] == [] and results["clinical"]["positive_class"] == "melanoma"

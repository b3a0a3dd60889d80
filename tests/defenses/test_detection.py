"""The Mahalanobis detector: AUROC arithmetic, feature hooks, and detection on a toy task
(high AUROC at a large budget, lower once the attacker also targets the detector)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auditor.evaluation.detection import FeatureExtractor, MahalanobisDetector, compute_auroc, detection_audit
from auditor.errors import InputError
from tests.defenses.toy import to_tensor, toy_arrays


def test_auroc_pure_function():
    assert compute_auroc([0, 1, 2], [3, 4]) == 1.0
    assert compute_auroc([3, 4], [0, 1, 2]) == 0.0
    assert compute_auroc([1, 1], [1, 1]) == 0.5
    assert compute_auroc([0, 2], [1, 3]) == 0.75
    assert np.isnan(compute_auroc([], [1.0]))
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(0, 1, 300), rng.normal(1, 1, 200)
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert compute_auroc(neg, pos) == pytest.approx(brute)


def test_features_are_the_input_of_the_last_linear(toy_model):
    x = torch.rand(4, 1, 8, 8)
    logits, feats = FeatureExtractor(toy_model)(x)
    assert torch.allclose(feats, toy_model.features(x)) and torch.allclose(logits, toy_model(x))


def test_scripted_models_use_their_features_method(toy_model):
    scripted = torch.jit.script(toy_model)
    x = torch.rand(2, 1, 8, 8)
    _, feats = FeatureExtractor(scripted)(x)
    assert torch.allclose(feats, toy_model.features(x), atol=1e-6)


def test_a_model_without_a_linear_layer_is_refused():
    with pytest.raises(InputError):
        FeatureExtractor(torch.jit.script(torch.nn.Sequential(torch.nn.Flatten())))


@pytest.fixture(scope="module")
def toy_detection(toy_model, registry):
    train_images, train_labels = toy_arrays(600, 0)
    detector = MahalanobisDetector(toy_model).fit(to_tensor(train_images), torch.from_numpy(train_labels))
    images, labels = toy_arrays(200, 21)
    return detection_audit(toy_model, detector, to_tensor(images), torch.from_numpy(labels), eps_255=[4, 64],
                           registry=registry, attacks=("fgsm", "pgd"), budget="quick", lambdas=(1.0, 4.0, 16.0),
                           adaptive_steps=30)


def test_detector_auroc_is_high_at_a_large_budget(toy_detection):
    rows = {(r["attack"], r["eps_255"]): r for r in toy_detection["attacks"]}
    assert rows[("pgd", 64)]["auroc"] > 0.95
    assert rows[("pgd", 64)]["auroc"] > rows[("pgd", 4)]["auroc_all"]
    assert rows[("pgd", 64)]["tpr_at_5fpr"] > 0.8
    assert toy_detection["threshold"] > 0 and toy_detection["fpr_target"] == 0.05


def test_adaptive_attack_evades_more_than_the_plain_one(toy_detection):
    plain = next(r for r in toy_detection["attacks"] if r["attack"] == "pgd" and r["eps_255"] == 64)
    adaptive = next(a for a in toy_detection["adaptive"] if a["eps_255"] == 64)
    assert adaptive["evasion_rate"] > plain["undetected_success_rate"]
    assert adaptive["guarded_accuracy"] == pytest.approx(1 - adaptive["evasion_rate"])
    assert sum(adaptive["lambda_counts"].values()) == round(adaptive["evasion_rate"] * toy_detection["n_clean_correct"])


def test_run_with_detector_fit_reports_auroc_and_the_adaptive_attacker(demo_inputs, tmp_path):
    """`medaudit run --detector-fit`: the detector fitted on clean data, its AUROC per attack
    and eps and the adaptive evasion rate land in results.json and in the report."""
    import json

    from typer.testing import CliRunner

    from auditor.cli import app
    from auditor.results import read_results

    model, data = demo_inputs
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "run", str(model), "--data", str(data), "--out", str(out), "--input-size", "32", "--budget", "quick",
        "--attacks", "fgsm,pgd", "--eps", "8", "--skip-checks", "--report-format", "html", "--quiet",
        "--detector-fit", str(data), "--detector-fit-split", "", "--detector-samples", "12"])
    assert result.exit_code == 0, result.output
    det = read_results(out)["detection"]
    assert det["fit"]["n"] == 40 and det["fit"]["evaluated_images_in_fit_set"] == det["n_clean_correct"]
    assert det["n_clean_correct"] == len(det["sample_indices"]) <= 12
    assert {(row["attack"], row["eps_255"]) for row in det["attacks"]} == {
        (a, 8.0) for a in ("fgsm", "pgd", "cw")}
    for row in det["attacks"] + det["adaptive"]:
        assert row["auroc"] is None or 0.0 <= row["auroc"] <= 1.0  # None (NaN) when nothing succeeded
    assert [row["eps_255"] for row in det["adaptive"]] == [8.0]
    assert all(0.0 <= row["evasion_rate"] <= 1.0 for row in det["adaptive"])
    html = (out / "report.html").read_text()
    assert "Adversarial-example detector evaluated in this audit" in html and "the AUROC below is optimistic" in html
    assert json.dumps(det, allow_nan=True)  # serialisable as written
    missing = CliRunner().invoke(app, ["run", str(model), "--data", str(data), "--out", str(tmp_path / "x"),
                                       "--detector-fit", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "--detector-fit" in missing.output

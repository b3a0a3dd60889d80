"""Validity checks of segmentation audits: they run (instead of "Not run"), pass on a working
model, fail on a model that masks its gradients or outputs probabilities, honour
--skip-checks and --check-samples, and reach the report's validity section."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from auditor.audit import run_audit
from auditor.evaluation.checks.segmentation_checks import SEG_DEFAULT_SAMPLES, check_dice_monotone
from tests.segmentation.conftest import ThresholdSeg, save_scripted, seg_config, write_seg_folders

ATTACKS = ["seg-fgsm-dice", "seg-pgd-dice"]


class Quantised(nn.Module):
    """The thresholding model behind an 8-bit input quantiser: same masks, zero input gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = ThresholdSeg()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 255) / 255)


class Probabilities(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = ThresholdSeg()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.inner(x))


def statuses(results: dict) -> dict[str, str]:
    return {item["key"]: item["status"] for item in results["checks"]["items"]}


def audit(model: nn.Module, tmp_path, registry, n: int = 4, **kwargs) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = save_scripted(model, tmp_path / "model.pt")
    data = write_seg_folders(tmp_path / "data", n=n)
    return run_audit(seg_config(path, data, tmp_path / "out", attacks=ATTACKS, **kwargs), registry, command="test")


def test_checks_run_and_pass_on_a_working_model(tmp_path, registry):
    results = audit(ThresholdSeg(), tmp_path, registry)
    checks = results["checks"]
    assert checks["verdict"] == "pass", [(i["key"], i["message"]) for i in checks["items"]]
    assert set(statuses(results)) == {"logits", "gradients", "determinism", "monotone", "iterative", "large-eps",
                                      "convergence", "noise"}
    assert checks["subsample"]["n"] == 4 and checks["subsample"]["of_images"] == 4
    assert checks["cost"]["backward_samples"] > 0  # the checks' own attacks are counted
    large = next(i for i in checks["items"] if i["key"] == "large-eps")
    assert large["numbers"]["dice"] < 0.2 * large["numbers"]["clean_dice"]


def test_a_quantising_model_fails_the_gradient_check(tmp_path, registry):
    results = audit(Quantised(), tmp_path, registry)
    got = statuses(results)
    assert got["gradients"] == "fail" and got["large-eps"] == "fail"
    assert results["checks"]["verdict"] == "fail"


def test_probability_outputs_fail_the_logits_check(tmp_path, registry):
    # prepare refuses such a model; with --allow-probabilities the check still says it is wrong
    assert statuses(audit(Probabilities(), tmp_path, registry, allow_probabilities=True))["logits"] == "fail"


def test_subsample_is_bounded_by_default_and_by_check_samples(tmp_path, registry):
    results = audit(ThresholdSeg(), tmp_path / "a", registry, n=10)
    assert results["checks"]["subsample"]["n"] == SEG_DEFAULT_SAMPLES
    results = audit(ThresholdSeg(), tmp_path / "b", registry, n=10, check_samples=2)
    assert results["checks"]["subsample"]["n"] == 2
    assert all(0 <= i < 10 for i in results["checks"]["subsample"]["indices"])


def test_skip_checks(tmp_path, registry):
    results = audit(ThresholdSeg(), tmp_path, registry, checks=False)
    assert results["checks"]["verdict"] == "skipped" and results["checks"]["items"] == []


def test_a_rising_dice_fails_the_monotone_rule():
    rising = {"pgd": [(2.0, 0.5), (8.0, 0.6)], "fgsm": [(2.0, 0.5), (8.0, 0.9)]}
    assert check_dice_monotone(rising, {"pgd"})["status"] == "fail"
    assert check_dice_monotone(rising, {"fgsm-only"} | set())["status"] == "pass"  # fgsm is reported, not judged
    assert check_dice_monotone({"pgd": [(2.0, 0.5), (8.0, 0.51)]}, {"pgd"})["status"] == "pass"  # within 0.02


def test_report_validity_section_shows_the_segmentation_checks(tmp_path, registry):
    rendering = pytest.importorskip("auditor.reporting.environment")
    context = pytest.importorskip("auditor.reporting.context")
    results = audit(Quantised(), tmp_path, registry)
    html = rendering.make_environment().get_template("partials/validity.html.jinja").render(
        **context.build_context(results))
    assert "Not run" not in html and "Input gradients are informative" in html
    assert "of the 4 audited images" in html and "correctly classified" not in html

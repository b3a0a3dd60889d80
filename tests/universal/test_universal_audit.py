"""`medaudit run --uap`: fit and evaluation sets kept apart (or the overlap said loudly),
fooling rate and accuracy under the UAP with intervals, Dice under the UAP for
segmentation, the report section, and a hostile results.json that cannot inline markup."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from auditor.audit import run_audit
from auditor.cli import app
from auditor.errors import UsageError
from auditor.evaluation.universal import split_fit_eval
from auditor.reporting.universal_view import universal_view
from auditor.results import read_results
from tests.segmentation.conftest import make_registry, save_scripted, seg_config, write_seg_folders, ThresholdSeg

QUICK = ["--input-size", "32", "--budget", "quick", "--attacks", "fgsm", "--eps", "8", "--skip-checks",
         "--report-format", "html", "--quiet"]


def test_split_is_seeded_disjoint_and_refuses_tiny_sets():
    fit, evaluation = split_fit_eval(10, seed=3)
    again = split_fit_eval(10, seed=3)
    assert np.array_equal(fit, again[0]) and np.array_equal(evaluation, again[1])
    assert not set(fit) & set(evaluation) and sorted([*fit, *evaluation]) == list(range(10))
    assert not np.array_equal(fit, split_fit_eval(10, seed=4)[0])
    with pytest.raises(UsageError, match="too few"):
        split_fit_eval(3, seed=0)


def test_run_with_uap_on_a_held_out_half(demo_inputs, tmp_path):
    model, data = demo_inputs
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(model), "--data", str(data), "--out", str(out), *QUICK, "--uap"])
    assert result.exit_code == 0, result.output
    uap = read_results(out)["universal"]
    assert uap["fit"]["source"] == "split of the audited data" and uap["fit"]["overlap"] == 0
    assert not set(uap["fit"]["indices"]) & set(uap["eval"]["indices"])
    assert uap["fit"]["n"] + uap["eval"]["n"] == 40
    (row,) = uap["per_eps"]
    assert row["eps_255"] == 8.0 and row["linf"] <= 8 / 255 + 1e-6
    assert 0 <= row["fooling_rate"] <= 1 and row["n_fooled"] == round(row["fooling_rate"] * uap["eval"]["n"])
    low, high = row["ci95"]
    assert low <= row["robust_accuracy"] <= high
    assert row["robust_accuracy"] <= uap["clean"]["accuracy"] + row["fooling_rate"]
    html = (out / "report.html").read_text()
    assert "Universal adversarial perturbation" in html and "No image is in both sets" in html
    assert "scaled up for visibility" in html


def test_fitting_on_the_audited_images_is_said_loudly(demo_inputs, tmp_path):
    model, data = demo_inputs
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(model), "--data", str(data), "--out", str(out), *QUICK,
                                      "--uap-fit", str(data), "--uap-fit-limit", "10"])
    assert result.exit_code == 0, result.output
    uap = read_results(out)["universal"]
    assert uap["fit"]["source"] == "data" and uap["fit"]["n"] == 10 and uap["fit"]["overlap"] == 10
    assert uap["eval"]["n"] == 40
    assert "10 of the fit images are also evaluation images" in (out / "report.html").read_text()
    missing = CliRunner().invoke(app, ["run", str(model), "--data", str(data), "--out", str(tmp_path / "x"),
                                       "--uap-fit", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "--uap-fit" in missing.output


def test_segmentation_dice_under_the_uap(tmp_path):
    data = write_seg_folders(tmp_path / "data", n=6)
    model = save_scripted(ThresholdSeg(), tmp_path / "seg.pt")
    config = seg_config(model, data, tmp_path / "out", attacks=["seg-fgsm-bce"], eps_255=[2.0, 8.0], uap=True,
                        checks=False)
    uap = run_audit(config, make_registry(), command="test")["universal"]
    assert uap["task"] == "segmentation" and uap["eval"]["n"] == 3 and uap["fit"]["n"] == 3
    small, large = uap["per_eps"]
    assert uap["clean"]["dice"] > 0.8
    # the lesions sit 3% above the background: one shared 8/255 pattern erases or floods them
    assert large["dice"] < uap["clean"]["dice"] - 0.2 and large["dice"] <= small["dice"] + 1e-9
    assert len(large["dice_per_image"]) == 3


def test_hostile_universal_block_is_dropped_not_inlined():
    hostile = {"universal": {"per_eps": [
        {"eps_255": 8, "perturbation_png": '"><script>alert(1)</script>', "example_png": "javascript:alert(1)",
         "fooling_rate": "1; DROP", "ci95": ["a"], "robust_accuracy": float("nan")},
        {"eps_255": "<b>"}, "not a row"], "fit": ["not", "a", "dict"], "clean": None}}
    view = universal_view(hostile)
    (row,) = view["rows"]
    assert row["perturbation_png"] is None and row["example_png"] is None
    assert row["fooling_rate"] is None and row["robust_accuracy"] is None and row["ci95"] is None
    assert view["fit"]["n"] is None and view["fit"]["overlap"] == 0
    assert universal_view({"universal": "x"}) is None and universal_view({}) is None

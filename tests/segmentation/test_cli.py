"""`medaudit run --task segmentation` through the CLI on a tiny synthetic data set and a
tiny TorchScript U-Net built in tmp_path: exit codes and the JSON it prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from auditor.architectures import UNet
from auditor.cli import app
from auditor.results import read_results
from tests.segmentation.conftest import SIZE, save_scripted

runner = CliRunner()


@pytest.fixture
def unet_file(tmp_path: Path) -> Path:
    """A seeded, untrained width-4 U-Net whose output layer is shifted and scaled so its
    outputs straddle 0 like logits (an untrained head can sit inside [0, 1] and look like
    probabilities to medaudit's probe)."""
    torch.manual_seed(0)
    model = UNet(in_channels=3, out_channels=1, width=4).eval()
    with torch.no_grad():
        out = model(torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)))
        model.out.bias.sub_(out.median())
        model.out.weight.mul_(20.0)
        model.out.bias.mul_(20.0)
    return save_scripted(model, tmp_path / "unet.pt")


def run_cli(model: Path, data: Path, out: Path, *extra: str):
    return runner.invoke(app, ["run", str(model), "--data", str(data), "--out", str(out), "--input-size", str(SIZE),
                               "--eps", "2,8", "--budget", "quick", "--report-format", "none", *extra])


def test_run_segmentation_json(unet_file, seg_data, tmp_path):
    result = run_cli(unet_file, seg_data, tmp_path / "out", "--task", "segmentation",
                     "--attacks", "seg-fgsm-bce,seg-pgd-dice", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    stdout = json.loads(result.stdout)
    results = read_results(tmp_path / "out")
    assert stdout["status"] == "complete" and stdout["out"] == [str(tmp_path / "out" / "results.json")]
    assert stdout["summary"]["clean_dice"] == results["clean"]["dice"]
    assert [(a["attack"], a["loss"], a["eps_255"]) for a in stdout["attacks"]] == [
        ("seg-fgsm-bce", "bce", 2.0), ("seg-pgd-dice", "dice", 2.0),
        ("seg-fgsm-bce", "bce", 8.0), ("seg-pgd-dice", "dice", 8.0)]
    assert all("samples" not in a for a in stdout["attacks"])  # per-image data stays in results.json
    assert results["model"]["task"] == "segmentation" and results["data"]["format"] == "seg-folders"
    assert results["model"]["format"] == "torchscript"
    for entry in results["attacks"]:
        assert entry["perturbation"]["linf_max"] <= entry["eps"] + 1e-6
        assert 0.0 <= entry["dice"] <= 1.0


def test_task_is_detected_from_the_output_shape(unet_file, seg_data, tmp_path):
    result = run_cli(unet_file, seg_data, tmp_path / "out", "--attacks", "seg-fgsm-dice", "--quiet")
    assert result.exit_code == 0, result.output
    assert read_results(tmp_path / "out")["model"]["task"] == "segmentation"


def test_default_battery_is_the_segmentation_one(unet_file, seg_data, tmp_path):
    result = run_cli(unet_file, seg_data, tmp_path / "out", "--task", "segmentation", "--quiet", "--limit", "1")
    assert result.exit_code == 0, result.output
    names = [a["name"] for a in read_results(tmp_path / "out")["config"]["attacks"]]
    assert names == ["seg-fgsm-bce", "seg-fgsm-dice", "seg-pgd-bce", "seg-pgd-dice", "seg-lesion-removal"]


def test_classification_attack_on_a_segmentation_model_is_a_usage_error(unet_file, seg_data, tmp_path):
    result = run_cli(unet_file, seg_data, tmp_path / "out", "--task", "segmentation", "--attacks", "pgd")
    assert result.exit_code == 2
    assert "does not support segmentation" in result.output


def test_missed_fraction_flag_reaches_the_results_and_the_report(unet_file, seg_data, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(unet_file), "--data", str(seg_data), "--out", str(out), "--input-size",
                                 str(SIZE), "--eps", "2", "--budget", "quick", "--report-format", "html",
                                 "--task", "segmentation", "--attacks", "seg-fgsm-bce", "--missed-fraction", "0.25",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_results(out)["config"]["missed_fraction"] == 0.25
    html = (out / "report.html").read_text()
    assert "predicted lesion area falls below 25% of the true area" in html
    assert "becomes any wrong class" not in html  # the classification wording stays out
    bad = run_cli(unet_file, seg_data, tmp_path / "bad", "--task", "segmentation", "--missed-fraction", "1.5")
    assert bad.exit_code == 2 and "--missed-fraction" in bad.output


def test_detector_fit_is_refused_for_segmentation(unet_file, seg_data, tmp_path):
    result = run_cli(unet_file, seg_data, tmp_path / "out", "--task", "segmentation", "--detector-fit", str(seg_data))
    assert result.exit_code == 2 and "--detector-fit is for classification audits" in result.output

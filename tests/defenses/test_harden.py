"""``medaudit harden``: the saved model keeps the contract and PGD-AT beats standard
training under PGD on a task where that is the known answer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from auditor.cli import app
from plugins.attacks.pgd import pgd_native
from tests.defenses.toy import EPS_255, to_tensor, toy_arrays

runner = CliRunner()


def _robust_accuracy(model, eps_255=EPS_255):
    images, labels = toy_arrays(300, 11)
    x, y = to_tensor(images), torch.from_numpy(labels)
    x_adv = pgd_native(model, x, y, eps_255 / 255, eps_255 / 255 / 4, 20, 0, "ce", 0)
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean()), float((model(x_adv).argmax(1) == y).float().mean())


def _harden(toy_files, out, *extra):
    args = ["harden", str(toy_files["model"]), "--data", str(toy_files["npz"]), "--split", "train",
            "--channels", "1", "--input-size", "8", "--eps", str(EPS_255), "--epochs", "4", "--steps", "5",
            "--lr", "3e-3", "--out", str(out), "--quiet", *extra]
    return runner.invoke(app, args)


@pytest.mark.parametrize("method", ["pgd-at", "trades"])
def test_harden_raises_robust_accuracy(toy_files, tmp_path, method):
    out = tmp_path / "hardened.pt"
    result = _harden(toy_files, out, "--method", method)
    assert result.exit_code == 0, result.output
    hardened = torch.jit.load(str(out)).eval()
    standard = torch.jit.load(str(toy_files["model"])).eval()
    x = torch.rand(3, 1, 8, 8)
    assert hardened(x).shape == (3, 2)  # same contract: [0,1] images in, two logits out
    clean_std, robust_std = _robust_accuracy(standard)
    clean_hard, robust_hard = _robust_accuracy(hardened)
    assert robust_hard > robust_std + 0.2, (robust_std, robust_hard)
    assert clean_hard > 0.7

    log = json.loads((tmp_path / "hardened.harden.json").read_text())
    assert log["method"] == method and len(log["epochs"]) == 4
    for row in log["epochs"]:
        assert {"loss", "clean_accuracy", "pgd_accuracy", "train_s"} <= set(row)
    assert log["data"]["n_heldout"] == 60 and log["data"]["n_train"] == 540
    assert log["after"]["pgd_accuracy"] > log["before"]["pgd_accuracy"]
    assert "measured" in log["evidence"]["message"] and log["evidence"]["family"] == "training"


def test_hardened_model_audit_cites_the_harden_log(toy_files, tmp_path):
    out = tmp_path / "hardened.pt"
    assert _harden(toy_files, out, "--epochs", "1").exit_code == 0
    result = runner.invoke(app, ["run", str(out), "--data", str(toy_files["folder"]), "--channels", "1",
                                 "--input-size", "8", "--attacks", "fgsm", "--eps", "8", "--budget", "quick",
                                 "--report-format", "none", "--quiet", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["defenses"][0]["name"] == "pgd-at" and "held-out" in results["defenses"][0]["message"]


@pytest.mark.parametrize("args, fragment", [
    (["--method", "fgsm-at"], "--method"),
    (["--epochs", "0"], "--epochs"),
    (["--eps", "-1"], "--eps"),
    (["--inner-loss", "l2"], "--inner-loss"),
])
def test_harden_usage_errors_exit_2(toy_files, tmp_path, args, fragment):
    result = _harden(toy_files, tmp_path / "h.pt", *args)
    assert result.exit_code == 2 and fragment in result.output and "Traceback" not in result.output
    assert not (tmp_path / "h.pt").exists()


def test_segmentation_pgd_at_raises_dice_under_pgd(tmp_path):
    """A toy segmentation task: the mask is where a faint square is; PGD-AT with the Dice
    inner loss must raise Dice under PGD-Dice on held-out images."""
    pytest.importorskip("plugins.attacks.seg_losses", reason="segmentation losses not installed")
    from auditor.hardening import HardenConfig, harden
    from auditor.registry import get_registry
    from tests.defenses.toy_seg import train_toy_unet, write_seg_folders

    data = write_seg_folders(tmp_path / "seg", n=80)
    model = train_toy_unet(data)
    model_path = tmp_path / "unet.pt"
    torch.jit.script(model).save(str(model_path))
    config = HardenConfig(model=model_path, data=data, out=tmp_path / "unet_at.pt", task="segmentation",
                          inner_loss="dice", eps_255=16, epochs=6, steps=4, lr=3e-3, input_size=(16, 16),
                          channels=1, val_fraction=0.25, eval_steps=10, batch_size=16)
    log = harden(config, get_registry())
    assert log["task"] == "segmentation" and log["settings"]["inner_loss"] == "dice"
    assert log["after"]["pgd_dice"] > log["before"]["pgd_dice"] + 0.05, (log["before"], log["after"])
    assert log["after"]["clean_dice"] > 0.9
    assert np.isfinite(log["after"]["clean_dice"])
    assert "Dice under PGD-Dice" in log["evidence"]["message"]

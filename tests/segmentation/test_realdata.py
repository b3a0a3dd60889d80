"""The real pretrained retina U-Net (orobix/retina-unet, TorchScript port) on DRIVE.

Reproduces the clean Dice that ``models/retina_unet_orobix/PORT.md`` states (per-image Dice
inside the field of view, logit >= 0, averaged: 0.8168) and shows Dice falling under
PGD with the BCE and the Dice loss as eps grows. Skipped when ../shared/data is absent.
Whole 576x560 images cost seconds per pass on a CPU, so the attack test runs on 128x128
crops of two test images (cut at multiples of 4, the model's pooling phase).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from auditor.audit import run_audit
from auditor.cli import app
from auditor.config import AuditConfig
from auditor.engine.prepare import prepare
from auditor.results import read_results
from auditor.engine.segmentation import SegmentationAudit

pytestmark = pytest.mark.realdata
MODEL = Path("models") / "retina_unet_orobix" / "retina_unet.torchscript.pt"
TEST_SET = Path("drive_preprocessed") / "test"
# PORT.md, "DRIVE test set, all 20 images, inside the FOV, threshold prob >= 0.5"
PORT_DICE = {"01": 0.8308, "02": 0.8544, "03": 0.7922, "04": 0.8226, "05": 0.8016, "06": 0.7927, "07": 0.8065,
             "08": 0.7825, "09": 0.7855, "10": 0.8093, "11": 0.8162, "12": 0.8221, "13": 0.8163, "14": 0.8333,
             "15": 0.8154, "16": 0.8357, "17": 0.8033, "18": 0.8249, "19": 0.8679, "20": 0.8235}
PORT_MEAN_DICE = 0.8168
FOV_PIXELS, VESSEL_PIXELS = 4_538_143, 577_649


@pytest.fixture
def two_threads():
    """Whole 576x560 images: convolutions big enough for a second thread to pay (the
    package's autouse fixture set one for the small tensors elsewhere)."""
    torch.set_num_threads(2)
    yield


def retina_config(shared: Path, data: Path, out: Path, size: tuple[int, int], **kwargs) -> AuditConfig:
    return AuditConfig(model=shared / MODEL, data=data, out=out, task="segmentation", modality="fundoscopy",
                       input_size=size, channels=1, device="cpu", formats=[], **kwargs)


@pytest.mark.slow
def test_clean_dice_reproduces_port_md(shared_data, tmp_path, registry, two_threads):
    config = retina_config(shared_data, shared_data / TEST_SET, tmp_path / "out", (576, 560),
                           eps_255=[2.0], attacks=["seg-fgsm-bce"], batch_size=4)
    audit = SegmentationAudit(prepare(config, registry))
    clean = audit.clean_pass()
    assert clean["n"] == 20 and audit.has_roi
    assert abs(clean["dice"] - PORT_MEAN_DICE) < 0.01
    per_image = {Path(i).stem: d for i, d in zip(clean["samples"]["ids"], clean["samples"]["dice"])}
    assert per_image == pytest.approx(PORT_DICE, abs=6e-5)  # PORT.md rounds to 4 decimals
    assert clean["dice_pooled"] == pytest.approx(0.8176, abs=1e-4)  # PORT.md's pooled F1
    assert int(audit.pixel_counts.sum()) == FOV_PIXELS and int(audit.pixel_counts[1]) == VESSEL_PIXELS


def test_cli_on_one_whole_image(shared_data, tmp_path, two_threads):
    """The command of the issue, on one image: fov ROI picked up, clean Dice as PORT.md says."""
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "run", str(shared_data / MODEL), "--data", str(shared_data / TEST_SET), "--task", "segmentation",
        "--modality", "fundoscopy", "--input-size", "576x560", "--channels", "1", "--limit", "1", "--eps", "2",
        "--attacks", "seg-fgsm-dice", "--out", str(out), "--report-format", "none", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    results = read_results(out)
    assert results["data"]["has_roi"] and results["data"]["roi_dir"] == "fov"
    stem = Path(results["clean"]["samples"]["ids"][0]).stem
    assert results["clean"]["dice"] == pytest.approx(PORT_DICE[stem], abs=6e-5)
    assert results["attacks"][0]["dice"] < results["clean"]["dice"]
    assert json.loads(result.stdout)["summary"]["clean_dice"] == results["clean"]["dice"]


def _best_window(vessels: np.ndarray, fov: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner (multiples of 32) of the size x size window inside the FOV with most vessel."""
    best, corner = -1, (0, 0)
    for top in range(0, vessels.shape[0] - size + 1, 32):
        for left in range(0, vessels.shape[1] - size + 1, 32):
            if fov[top:top + size, left:left + size].all():
                count = int(vessels[top:top + size, left:left + size].sum())
                if count > best:
                    best, corner = count, (top, left)
    return corner


def test_dice_falls_under_pgd_bce_and_dice(shared_data, tmp_path, registry):
    size = 128
    data = tmp_path / "crops"
    for name in ("01", "02"):
        arrays = {sub: np.asarray(Image.open(shared_data / TEST_SET / sub / f"{name}.png"))
                  for sub in ("images", "vessels", "fov")}
        top, left = _best_window(arrays["vessels"] > 0, arrays["fov"] > 0, size)
        for sub, array in arrays.items():
            (data / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array[top:top + size, left:left + size]).save(data / sub / f"{name}.png")
    config = retina_config(shared_data, data, tmp_path / "out", (size, size), eps_255=[2.0, 8.0],
                           attacks=["seg-pgd-bce", "seg-pgd-dice"], budget="quick")
    results = run_audit(config, registry)
    clean = results["clean"]["dice"]
    assert clean > 0.7
    dice = {(a["attack"], a["eps_255"]): a["dice"] for a in results["attacks"]}
    for attack in ("seg-pgd-bce", "seg-pgd-dice"):
        assert dice[(attack, 8.0)] < dice[(attack, 2.0)] < clean, (attack, dice)
    assert results["worst_case"][-1]["dice"] < 0.5 * clean  # eps 8/255 wrecks the vessel map

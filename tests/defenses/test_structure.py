"""``medaudit harden --method block-switching | feature-denoising``: the networks they build,
the saved TorchScript model's contract, and block switching audited through EoT."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from auditor.architectures import SmallCNN
from auditor.cli import app
from auditor.errors import UsageError
from auditor.hardening.structure import (BlockSwitchingNet, DenoisingAutoencoder, LowerBlock, NonLocalDenoise,
                                         insert_denoising_blocks)
from tests.defenses.toy import EPS_255

runner = CliRunner()


def test_block_switching_draws_a_copy_per_image_and_per_call():
    torch.manual_seed(0)
    net = BlockSwitchingNet(DenoisingAutoencoder(1), [LowerBlock(1) for _ in range(3)], SmallCNN(1, 2, 4)).eval()
    scripted = torch.jit.script(net)
    x = torch.rand(1, 1, 8, 8).expand(64, 1, 8, 8).contiguous()  # one image, 64 times in a batch
    with torch.no_grad():
        per_image = {tuple(row.round(decimals=5).tolist()) for row in scripted(x)}
        per_call = {tuple(scripted(x[:1])[0].round(decimals=5).tolist()) for _ in range(30)}
        torch.manual_seed(3)
        first = scripted(x)
        torch.manual_seed(3)
        assert torch.equal(first, scripted(x))  # the global generator decides: seeded, it repeats
    assert len(per_image) == 3 and len(per_call) == 3


def test_denoising_blocks_start_as_the_identity_and_script():
    torch.manual_seed(0)
    model = SmallCNN(1, 2, 4).eval()
    x = torch.rand(5, 1, 16, 16)
    with torch.no_grad():
        before = model(x)
        names = insert_denoising_blocks(model, 2)
        after = model(x)
    assert names == ["features.3", "features.6"]
    assert sum(isinstance(m, NonLocalDenoise) for m in model.modules()) == 2
    assert torch.allclose(before, after)
    assert torch.allclose(torch.jit.script(model)(x), after)
    with pytest.raises(UsageError):
        insert_denoising_blocks(torch.jit.script(SmallCNN(1, 2, 4)), 2)  # TorchScript takes no new layers
    with pytest.raises(UsageError):
        insert_denoising_blocks(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)), 1)


def _harden(model, data, out, *extra):
    return runner.invoke(app, ["harden", str(model), "--data", str(data), "--split", "train", "--channels", "1",
                               "--input-size", "8", "--eps", str(EPS_255), "--epochs", "1", "--steps", "3",
                               "--eval-steps", "3", "--lr", "3e-3", "--out", str(out), "--quiet", "--no-sandbox",
                               *extra])


def test_harden_block_switching_then_audit_with_eot(toy_files, tmp_path):
    out = tmp_path / "bs.pt"
    result = _harden(toy_files["model"], toy_files["npz"], out, "--method", "block-switching", "--copies", "2",
                     "--limit", "200")
    assert result.exit_code == 0, result.output
    net = torch.jit.load(str(out)).eval()
    assert net(torch.rand(3, 1, 8, 8)).shape == (3, 2) and net.copies == 2
    log = json.loads((tmp_path / "bs.harden.json").read_text())
    facts = log["block_switching"]
    assert facts["copies"] == 2 and len(facts["lower_loss"]) == 2 and facts["autoencoder"]["lr"] == 0.002
    assert "without EoT" in log["evidence"]["message"]
    audit = tmp_path / "audit"
    result = runner.invoke(app, ["run", str(out), "--data", str(toy_files["folder"]), "--out", str(audit),
                                 "--channels", "1", "--input-size", "8", "--eps", str(EPS_255), "--attacks", "pgd",
                                 "--budget", "quick", "--skip-checks", "--report-format", "none", "--quiet",
                                 "--no-sandbox", "--limit", "24", "--defense", "model-eot:eot_samples=4"])
    assert result.exit_code == 0, result.output
    defense = json.loads((audit / "results.json").read_text())["defense"]
    assert defense["adaptive"]["method"] == "eot" and defense["adaptive"]["eot_samples"] == 4
    assert defense["non_adaptive"]["worst_case"] and defense["undefended"]["worst_case"]


def test_harden_feature_denoising_needs_an_eager_model(toy_files, tmp_path):
    refused = _harden(toy_files["model"], toy_files["npz"], tmp_path / "x.pt", "--method", "feature-denoising")
    assert refused.exit_code == 2 and "eager model" in refused.output
    weights = tmp_path / "cnn.pth"
    torch.manual_seed(0)
    torch.save(SmallCNN(1, 2, 4).state_dict(), weights)
    out = tmp_path / "fd.pt"
    result = _harden(weights, toy_files["npz"], out, "--arch", "tests.defenses.toy_cnn:toy_cnn", "--method",
                     "feature-denoising", "--denoise-blocks", "1", "--limit", "120")
    assert result.exit_code == 0, result.output
    saved = torch.jit.load(str(out)).eval()
    assert saved(torch.rand(2, 1, 8, 8)).shape == (2, 2)
    log = json.loads((tmp_path / "fd.harden.json").read_text())
    assert log["structure"]["denoised_layers"] == ["features.6"] and log["method"] == "feature-denoising"
    assert log["after"]["pgd_accuracy"] is not None


@pytest.mark.parametrize("args", [["--copies", "1"], ["--denoise-blocks", "0"]])
def test_structure_usage_errors_exit_2(toy_files, tmp_path, args):
    result = _harden(toy_files["model"], toy_files["npz"], tmp_path / "x.pt", "--method", "block-switching", *args)
    assert result.exit_code == 2

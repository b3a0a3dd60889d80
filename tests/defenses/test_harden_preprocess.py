"""``medaudit harden --preprocess``: the preset wraps the model while it trains (attacks in
[0, 1] units) and the saved network, as with --mean/--std, expects the preset's input."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from auditor.cli import app
from tests.core.tiny_audit import make_data, save_model


def _harden(tmp_path, *extra: str):
    model, data = save_model(tmp_path / "tiny.pt"), make_data(tmp_path / "data", per_class=6)
    out = tmp_path / "hardened.pt"
    args = ["harden", str(model), "--data", str(data), "--input-size", "16", "--eps", "2", "--epochs", "1",
            "--steps", "1", "--out", str(out), "--no-sandbox", "--json", *extra]
    return CliRunner().invoke(app, args), out


def test_harden_with_caffe_saves_a_network_that_reads_bgr_in_0_255(tmp_path):
    result, out = _harden(tmp_path, "--preprocess", "caffe")
    assert result.exit_code == 0, result.output
    log = json.loads(result.stdout)
    assert log["epochs"]
    saved = torch.jit.load(str(out)).eval()
    x = torch.rand(2, 3, 16, 16)
    bgr = x.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    assert saved(bgr).shape == (2, 2)


def test_harden_preprocess_with_mean_is_a_usage_error(tmp_path):
    result, out = _harden(tmp_path, "--preprocess", "caffe", "--mean", "0.5", "--std", "0.5")
    assert result.exit_code == 2 and "--preprocess" in result.output and not out.exists()

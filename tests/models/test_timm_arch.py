"""``--arch timm:NAME``: a timm network built for a state dict, num_classes and in_chans
read from the weights; timm imports behind a torchvision stand-in on the CPU torch build."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from typer.testing import CliRunner

from auditor.cli import app
from tests.core.tiny_audit import make_data

pytestmark = pytest.mark.slow  # timm import and two ResNets: about a minute on 2 busy cores

if importlib.util.find_spec("timm") is None:
    pytest.skip("timm is not installed (pip install --no-deps timm && pip install huggingface_hub safetensors)",
                allow_module_level=True)

from plugins.models._timm import import_timm  # noqa: E402


def _weights(tmp_path, name: str = "resnet18", **kwargs) -> str:
    torch.manual_seed(0)
    net = import_timm().create_model(name, pretrained=False, **kwargs)
    path = tmp_path / f"{name}.pth"
    torch.save(net.state_dict(), path)
    return str(path)


def _run(tmp_path, weights: str, arch: str, out: str = "out"):
    data = make_data(tmp_path / "data")
    return CliRunner().invoke(app, [
        "run", weights, "--arch", arch, "--data", str(data), "--out", str(tmp_path / out), "--input-size", "32",
        "--attacks", "fgsm", "--eps", "2", "--budget", "quick", "--skip-checks", "--report-format", "none",
        "--quiet", "--no-sandbox"])


def test_a_fine_tuned_timm_checkpoint_needs_no_user_code(tmp_path):
    # two classes and one input channel: neither is timm's default (1000, 3)
    result = _run(tmp_path, _weights(tmp_path, num_classes=2, in_chans=1), "timm:resnet18")
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["model"]["num_classes"] == 2 and results["model"]["input_shape"] == [1, 32, 32]
    assert results["attacks"][0]["attack"] == "fgsm"
    assert "torchvision" not in __import__("sys").modules  # the stand-in does not outlive timm's import


def test_timm_names_and_weights_that_do_not_match_are_refused(tmp_path):
    weights = _weights(tmp_path, num_classes=2)
    unknown = _run(tmp_path, weights, "timm:no_such_net_h15", "a")
    assert unknown.exit_code == 2 and "has no model 'no_such_net_h15'" in unknown.output
    other = _run(tmp_path, weights, "timm:resnet34", "b")  # resnet18 weights into resnet34
    assert other.exit_code == 3 and "does not match --arch timm:resnet34" in other.output

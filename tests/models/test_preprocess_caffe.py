"""``--preprocess caffe``: the normalisation wrapper swaps RGB to BGR and subtracts the
ImageNet mean in 0-255 units, differentiably, so gradient attacks see the same model."""

from __future__ import annotations

import pytest
import torch

from auditor.errors import UsageError
from auditor.models import NormalizedModel, preprocess_channel_order, preprocess_normalization


class _Recorder(torch.nn.Module):
    """Returns what it was given, summed per channel: the wrapper's output, observable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return x.sum(dim=(2, 3))


def _caffe(model: torch.nn.Module) -> NormalizedModel:
    mean, std = preprocess_normalization("caffe")
    return NormalizedModel(model, mean, std, preprocess_channel_order("caffe"))


def test_caffe_feeds_bgr_minus_the_imagenet_mean_in_0_255():
    inner = _Recorder()
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0], x[:, 1], x[:, 2] = 1.0, 0.5, 0.0  # pure-ish red image
    _caffe(inner)(x)
    # model channel 0 is blue (0 -> -103.939), 1 green (127.5 - 116.779), 2 red (255 - 123.68)
    torch.testing.assert_close(inner.seen[0, :, 0, 0], torch.tensor([-103.939, 127.5 - 116.779, 255 - 123.68]))


def test_the_channel_swap_passes_gradients_to_the_right_channel():
    weights = torch.tensor([1.0, 2.0, 3.0])  # the model weighs B, G, R differently
    model = _caffe(torch.nn.Sequential(_Recorder(), torch.nn.Linear(3, 1, bias=False)))
    model.model[1].weight.data = weights.view(1, 3)
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    model(x).sum().backward()
    # d/dx_R = 255 * weight of the model's R channel (its third): 3 * 255 per pixel
    per_channel = x.grad[0, :, 0, 0]
    torch.testing.assert_close(per_channel, torch.tensor([3.0, 2.0, 1.0]) * 255)


def test_caffe_on_a_greyscale_image_is_a_usage_error():
    with pytest.raises(UsageError, match="--channels 3"):
        _caffe(_Recorder())(torch.rand(1, 1, 2, 2))


def test_other_presets_keep_the_stored_channel_order():
    assert preprocess_channel_order("torch") is None and preprocess_channel_order(None) is None


def test_run_with_caffe_records_the_preset(tmp_path):
    import json

    from typer.testing import CliRunner

    from auditor.cli import app
    from tests.core.tiny_audit import make_data, run_args, save_model

    model, data, out = save_model(tmp_path / "tiny.pt"), make_data(tmp_path / "data"), tmp_path / "out"
    result = CliRunner().invoke(app, [*run_args(model, data, out, "--no-sandbox"), "--preprocess", "caffe"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["normalization"]["preset"] == "caffe"
    assert results["model"]["normalization"]["mean"] == pytest.approx([103.939 / 255, 116.779 / 255, 123.68 / 255])
    assert results["status"] == "complete" and results["attacks"][0]["attack"] == "fgsm"

"""probe_model, NormalizedModel and infer_input_channels on tiny synthetic models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from auditor.errors import InputError, UsageError
from auditor.models import NormalizedModel, infer_input_channels, probe_model
from tests.models.tiny import TinyCNN, TinySeg


class Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def test_normalized_model_math():
    captured = {}

    def record(x):
        captured["x"] = x
        return x.mean(dim=(2, 3))

    wrapped = NormalizedModel(Lambda(record), mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 2.0])
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    wrapped(x)
    expected = torch.stack([(x[:, 0] - 0.5) / 0.5, (x[:, 1] - 0.25) / 0.25, x[:, 2] / 2.0], dim=1)
    torch.testing.assert_close(captured["x"], expected)


def test_normalized_model_single_value_broadcasts_and_rejects_bad_std():
    wrapped = NormalizedModel(nn.Identity(), mean=[0.5], std=[0.25])
    torch.testing.assert_close(wrapped(torch.ones(1, 3, 2, 2)), torch.full((1, 3, 2, 2), 2.0))
    with pytest.raises(UsageError, match="--std values must be > 0"):
        NormalizedModel(nn.Identity(), mean=[0.0], std=[0.0])
    with pytest.raises(UsageError, match="--mean has 3 values but --std has 2"):
        NormalizedModel(nn.Identity(), mean=[0, 0, 0], std=[1, 1])


def test_probe_classification_logits():
    probe = probe_model(TinyCNN().eval(), (3, 16, 16), "cpu")
    assert probe.task == "classification" and probe.output_shape == (4, 4)
    assert probe.num_classes == 4 and not probe.binary
    assert not probe.looks_like_probabilities and probe.probability_kind is None and probe.finite


def test_probe_detects_softmax():
    model = nn.Sequential(TinyCNN(), nn.Softmax(dim=1)).eval()
    probe = probe_model(model, (3, 16, 16), "cpu")
    assert probe.looks_like_probabilities and probe.probability_kind == "softmax"


def test_probe_detects_single_sigmoid_output():
    model = nn.Sequential(TinyCNN(num_classes=1), nn.Sigmoid()).eval()
    probe = probe_model(model, (3, 16, 16), "cpu")
    assert probe.task == "classification" and probe.binary and probe.num_classes == 2
    assert probe.probability_kind == "sigmoid"


def test_probe_segmentation_binary_sigmoid():
    probe = probe_model(nn.Sequential(TinySeg(), nn.Sigmoid()), (1, 12, 8), "cpu")
    assert probe.task == "segmentation" and probe.output_shape == (4, 1, 12, 8)
    assert probe.binary and probe.num_classes == 2 and probe.looks_like_probabilities


def test_probe_segmentation_multiclass_logits():
    probe = probe_model(TinySeg(in_channels=3, out_channels=3), (3, 8, 8), "cpu")
    assert probe.task == "segmentation" and probe.num_classes == 3 and not probe.binary
    assert not probe.looks_like_probabilities


def test_probe_is_seeded():
    model = Lambda(lambda x: x.mean(dim=(2, 3)))
    assert probe_model(model, (3, 4, 4), "cpu", seed=5) == probe_model(model, (3, 4, 4), "cpu", seed=5)


def test_probe_nan_output():
    model = Lambda(lambda x: x.mean(dim=(2, 3)) * float("nan"))
    with pytest.raises(InputError, match="NaN or Inf"):
        probe_model(model, (3, 8, 8), "cpu")
    assert not probe_model(model, (3, 8, 8), "cpu", allow_nonfinite=True).finite


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda x: x.mean(dim=(1, 2, 3)), r"shape \(4,\)"),
        (lambda x: x[:, :, ::2, ::2], r"shape \(4, 3, 4, 4\) for 8x8 inputs"),
        (lambda x: x.mean(dim=(2, 3))[:2], r"for a batch of 4"),
        (lambda x: (x.mean(dim=(2, 3)),), "returned tuple, not a tensor"),
    ],
)
def test_probe_wrong_outputs(fn, match):
    with pytest.raises(InputError, match=match):
        probe_model(Lambda(fn), (3, 8, 8), "cpu")


def test_probe_raising_model_one_line():
    def boom(x):
        raise ValueError("first line\nsecond line")

    with pytest.raises(InputError) as info:
        probe_model(Lambda(boom), (3, 8, 8), "cpu")
    assert str(info.value) == "model raised ValueError on a (4, 3, 8, 8) input batch: first line"


def test_probe_channel_mismatch():
    with pytest.raises(InputError, match="model expects 1 channels but got 3; use --channels or a matching --modality"):
        probe_model(TinySeg(in_channels=1), (3, 8, 8), "cpu")


def test_probe_channel_mismatch_scripted():
    scripted = torch.jit.script(TinyCNN(in_channels=1))
    with pytest.raises(InputError, match="model expects 1 channels"):
        probe_model(scripted, (3, 8, 8), "cpu")


def test_infer_input_channels():
    assert infer_input_channels(TinyCNN(in_channels=5)) == 5
    assert infer_input_channels(torch.jit.script(TinyCNN(in_channels=2))) == 2
    assert infer_input_channels(NormalizedModel(TinySeg(in_channels=1), [0.5], [0.5])) == 1
    assert infer_input_channels(nn.Linear(3, 3)) is None

"""Keras 3 models on Keras' PyTorch backend: channels-last handled, logits audited instead
of a final softmax, the declared input shape used, and safe_mode's refusals kept."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from auditor.cli import app
from auditor.errors import InputError
from auditor.interfaces import ModelOptions
from auditor.models import PREPROCESS_PRESETS, open_model, preprocess_channel_order, preprocess_normalization

keras_model = pytest.importorskip("plugins.models.keras_model")
try:
    keras = keras_model.import_keras()
except InputError as exc:  # not installed, or already imported on another backend
    pytest.skip(str(exc), allow_module_level=True)


def _tiny(tmp_path: Path, *, size: int = 16, classes: int = 3, lambda_layer: bool = False) -> tuple[Path, object]:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    if lambda_layer:
        hidden = keras.layers.Lambda(lambda t: t * 2.0)(hidden)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    outputs = keras.layers.Dense(classes, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    path = tmp_path / ("lambda.keras" if lambda_layer else "tiny.keras")
    model.save(path)
    return path, model


def test_keras_model_loads_channels_last_with_logits_and_gradients(registry, tmp_path):
    path, original = _tiny(tmp_path)
    loaded = open_model(registry, path)
    assert loaded.format == "keras" and loaded.input_size == (16, 16)
    assert loaded.details["keras_backend"] == "torch" and loaded.details["keras_version"] == keras.__version__
    assert loaded.details["output_activation_removed"] == "softmax"
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    logits = loaded.module(x)
    nhwc = x.detach().permute(0, 2, 3, 1).numpy()
    # the adapter returns the Dense layer's pre-activation outputs: softmax of them is Keras' prediction
    np.testing.assert_allclose(torch.softmax(logits, 1).detach().numpy(), original.predict(nhwc, verbose=0), atol=1e-5)
    dense = original.layers[-1]
    features = keras.Model(original.inputs, dense.input).predict(nhwc, verbose=0)
    kernel, bias = (np.asarray(w) for w in dense.get_weights())
    np.testing.assert_allclose(logits.detach().numpy(), features @ kernel + bias, atol=1e-5)
    logits[:, 0].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in loaded.module.parameters())


def test_separate_softmax_layer_is_taken_off(registry, tmp_path):
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(2)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Softmax()(hidden))
    model.save(tmp_path / "sm.keras")
    loaded = open_model(registry, tmp_path / "sm.keras")
    assert loaded.details["output_activation_removed"] == "softmax" and loaded.input_size == (8, 8)
    out = loaded.module(torch.rand(3, 1, 8, 8))
    assert not torch.allclose(out.sum(1), torch.ones(3))  # logits, not probabilities


def test_lambda_layer_needs_trust_model(registry, tmp_path):
    path, _ = _tiny(tmp_path, lambda_layer=True)
    with pytest.raises(InputError, match="trust-model"):
        open_model(registry, path)
    assert open_model(registry, path, trust_model=True).module(torch.rand(1, 3, 16, 16)).shape == (1, 3)


@pytest.mark.parametrize("config", [None, {"module": "os", "class_name": "system", "config": {"command": "true"}}])
def test_hostile_keras_files_are_input_errors(registry, tmp_path, config):
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w") as archive:
        if config is None:
            archive.writestr("readme.txt", "not a keras archive")
        else:
            archive.writestr("config.json", json.dumps(config))
            archive.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
    with pytest.raises(InputError, match="cannot load"):
        keras_model.KerasLoader().load(path, ModelOptions())


def test_lambda_model_refused_through_the_cli_with_exit_3(tmp_path):
    path, _ = _tiny(tmp_path, lambda_layer=True)
    result = CliRunner().invoke(app, ["run", str(path), "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 3, result.output
    assert "safe_mode" in result.output or "trust-model" in result.output


def test_keras_audit_end_to_end(demo_inputs, tmp_path):
    from auditor.results import read_results

    _, data = demo_inputs
    classes = sum(1 for d in Path(data).iterdir() if d.is_dir())
    path, _ = _tiny(tmp_path, size=32, classes=classes)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "run", str(path), "--data", str(data), "--out", str(out), "--budget", "quick", "--attacks", "fgsm",
        "--eps", "8", "--skip-checks", "--report-format", "html", "--quiet", "--preprocess", "tf"])
    assert result.exit_code == 0, result.output
    model = read_results(out)["model"]
    assert model["format"] == "keras" and model["input_size_source"] == "model" and model["outputs"] == "logits"
    assert model["loader_details"]["output_activation_removed"] == "softmax"
    assert model["normalization"] == {"mean": [0.5], "std": [0.5], "preset": "tf"}
    html = (out / "report.html").read_text()
    assert "--preprocess tf" in html and f"Keras {keras.__version__}, torch backend" in html
    assert "the model ends in a softmax" in html


@pytest.mark.parametrize("preset", sorted(PREPROCESS_PRESETS))
def test_preprocess_presets_feed_the_model_its_convention(registry, tmp_path, preset):
    path, original = _tiny(tmp_path)
    mean, std = preprocess_normalization(preset)
    loaded = open_model(registry, path, mean=mean, std=std, channel_order=preprocess_channel_order(preset))
    x = torch.rand(2, 3, 16, 16)
    expected = {"tf": x * 2 - 1, "raw255": x * 255,
                "torch": (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
                # Keras' caffe mode: BGR, then the ImageNet BGR mean subtracted in 0-255
                "caffe": x.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)}[preset]
    with torch.no_grad():
        probs = torch.softmax(loaded.module(x), 1).numpy()
    np.testing.assert_allclose(probs, original.predict(expected.permute(0, 2, 3, 1).numpy(), verbose=0),
                               atol=1e-4)


def test_preprocess_and_mean_together_is_a_usage_error(tmp_path):
    path, _ = _tiny(tmp_path)
    result = CliRunner().invoke(app, ["run", str(path), "--data", str(tmp_path), "--preprocess", "tf",
                                      "--mean", "0.5", "--std", "0.5"])
    assert result.exit_code == 2 and "--preprocess" in result.output
    unknown = CliRunner().invoke(app, ["run", str(path), "--data", str(tmp_path), "--preprocess", "bgr-ish"])
    assert unknown.exit_code == 2 and "unknown preset 'bgr-ish'" in unknown.output


def test_legacy_h5_full_model_loads(registry, tmp_path):
    _, original = _tiny(tmp_path)
    original.save(tmp_path / "tiny.h5")
    loaded = open_model(registry, tmp_path / "tiny.h5")
    assert loaded.format == "keras" and loaded.input_size == (16, 16)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        probs = torch.softmax(loaded.module(x), 1).numpy()
    np.testing.assert_allclose(probs, original.predict(x.permute(0, 2, 3, 1).numpy(), verbose=0), atol=1e-5)


def test_declared_shape_sets_channels_and_a_conflicting_input_size_is_a_usage_error(tmp_path):
    from PIL import Image

    inputs = keras.Input((12, 12, 1))
    hidden = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    keras.Model(inputs, keras.layers.Dense(2, activation="sigmoid")(hidden)).save(tmp_path / "gray.keras")
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (data / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(data / label / f"{i}.png")
    args = ["run", str(tmp_path / "gray.keras"), "--data", str(data), "--budget", "quick", "--attacks", "fgsm",
            "--eps", "8", "--skip-checks", "--report-format", "none", "--quiet"]
    clash = CliRunner().invoke(app, args + ["--out", str(tmp_path / "a"), "--input-size", "16"])
    assert clash.exit_code == 2 and "16x16" in clash.output and "12x12" in clash.output, clash.output
    ok = CliRunner().invoke(app, args + ["--out", str(tmp_path / "b")])
    assert ok.exit_code == 0, ok.output
    from auditor.results import read_results

    model = read_results(tmp_path / "b")["model"]
    assert model["input_shape"] == [1, 12, 12] and model["input_size_source"] == "model"
    assert model["loader_details"]["output_activation_removed"] == "sigmoid"

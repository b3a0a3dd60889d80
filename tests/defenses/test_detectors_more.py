"""Kernel density + Bayesian uncertainty (Feinman et al. 2017) and LID (Ma et al. 2018)
beside the Mahalanobis detector: the estimators on known geometry, detection on the toy
task, and each detector against its own adaptive attacker."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auditor.evaluation.detection import (DETECTORS, KernelDensityDetector, LIDDetector, detection_audit_many,
                                          lid_mle)
from tests.defenses.toy import to_tensor, toy_arrays


def test_lid_estimates_the_dimension_of_the_data_around_a_point():
    gen = torch.Generator().manual_seed(0)
    flat = torch.zeros(3000, 12, dtype=torch.float64)
    flat[:, :2] = torch.rand(3000, 2, generator=gen, dtype=torch.float64)  # a 2-D sheet in 12-D
    full = torch.rand(3000, 12, generator=gen, dtype=torch.float64)  # all 12 dimensions
    queries_flat, queries_full = flat[:50].clone(), full[:50] * 0.5 + 0.25
    queries_flat[:, :2] = queries_flat[:, :2] * 0.5 + 0.25  # on the sheet, away from its edges
    lid_flat = float(lid_mle(queries_flat, flat[50:], k=20).median())
    lid_full = float(lid_mle(queries_full, full[50:], k=20).median())
    assert 1.3 < lid_flat < 3.0, lid_flat
    assert lid_full > 3 * lid_flat, (lid_flat, lid_full)


@pytest.fixture(scope="module")
def three_detectors(toy_model, registry):
    images, labels = toy_arrays(600, 0)
    x_fit, y_fit = to_tensor(images), torch.from_numpy(labels)
    detectors = [DETECTORS[name](toy_model).fit(x_fit, y_fit) for name in ("mahalanobis", "kd-bu", "lid")]
    images, labels = toy_arrays(80, 21)
    reports = detection_audit_many(toy_model, detectors, to_tensor(images), torch.from_numpy(labels), eps_255=[64],
                                   registry=registry, attacks=("pgd",), budget="quick", lambdas=(0.0, 1.0, 16.0),
                                   adaptive_steps=20)
    return {r["detector"]["name"]: r for r in reports}


def test_each_detector_scores_the_same_adversarial_images(three_detectors):
    assert set(three_detectors) == {"mahalanobis", "kd-bu", "lid"}
    counts = {name: r["attacks"][0]["n_successful"] for name, r in three_detectors.items()}
    assert len(set(counts.values())) == 1 and min(counts.values()) > 0, counts  # one set of images for all
    for r in three_detectors.values():
        assert 0.0 <= r["attacks"][0]["auroc"] <= 1.0


def test_lid_flags_plain_pgd_and_its_adaptive_attacker_evades_more(three_detectors):
    plain, adaptive = three_detectors["lid"]["attacks"][0], three_detectors["lid"]["adaptive"][0]
    assert plain["auroc"] > 0.75, plain  # the detector sees the plain attack
    assert adaptive["evasion_rate"] > plain["undetected_success_rate"] + 0.05, (plain, adaptive)
    assert adaptive["auroc"] < plain["auroc"] and adaptive["score_scale"] > 0


def test_kd_bu_misses_pgd_on_the_toy_task(three_detectors):
    """On the toy task PGD moves the features into the other class's dense region, so the
    density term calls them normal (AUROC below chance): the table must show that, not hide it."""
    plain, adaptive = three_detectors["kd-bu"]["attacks"][0], three_detectors["kd-bu"]["adaptive"][0]
    assert plain["auroc"] < 0.5 and plain["undetected_success_rate"] > 0.8, plain
    assert adaptive["evasion_rate"] > 0.8, adaptive


def test_kd_bu_is_deterministic_and_differentiable(toy_model):
    images, labels = toy_arrays(200, 0)
    detector = KernelDensityDetector(toy_model).fit(to_tensor(images), torch.from_numpy(labels))
    x = to_tensor(toy_arrays(8, 5)[0]).requires_grad_(True)
    _, score = detector.forward(x)
    (grad,) = torch.autograd.grad(score.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert torch.equal(detector.score(x.detach()), detector.score(x.detach()))  # fixed, seeded dropout masks
    assert detector.describe()["mc_samples"] == 16 and detector.describe()["bandwidth"] > 0


def test_a_class_missing_from_the_fit_data_scores_as_far_off_the_manifold(toy_model):
    """Hostile fit data: only one class present. Images predicted as the other class must
    not crash the detector or look clean."""
    images, labels = toy_arrays(300, 0)
    keep = labels == 0
    detector = KernelDensityDetector(toy_model).fit(to_tensor(images[keep]), torch.from_numpy(labels[keep]))
    x = to_tensor(toy_arrays(40, 9)[0])
    with torch.no_grad():
        pred = toy_model(x).argmax(1).numpy()
    scores = detector.score(x).numpy()
    assert np.isfinite(scores).all()
    if (pred == 1).any() and (pred == 0).any():
        assert scores[pred == 1].min() > scores[pred == 0].max()
    lid = LIDDetector(toy_model).fit(to_tensor(images[:3]), torch.from_numpy(labels[:3]))  # fewer images than k
    assert np.isfinite(lid.score(x).numpy()).all()

"""Clinical metrics: positive class, sensitivity/specificity, AUROC with DeLong, flips, targeted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auditor.evaluation.clinical import (compute_auroc, compute_sensitivity_specificity, flip_rates,
                              resolve_positive_class, worst_case_predictions)
from auditor.errors import UsageError


# ----------------------------------------------------------------- positive class
def test_positive_class_from_the_modality():
    got = resolve_positive_class(None, ["benign", "melanoma"], "melanoma", "dermoscopy")
    assert (got["index"], got["name"], got["source"]) == (1, "melanoma", "modality")


def test_numeric_binary_classes_are_not_guessed():
    """breastmnist: 0 is malignant. Taking class 1 would swap sensitivity and specificity."""
    got = resolve_positive_class(None, ["0", "1"], "malignant", "ultrasound")
    assert got["index"] is None and got["needs_positive_class"]
    assert "--positive-class" in got["note"] and "'malignant' (the ultrasound preset) is not among" in got["note"]
    assert resolve_positive_class("1", ["0", "1"], "malignant")["index"] == 1


def test_class_names_match_ignoring_case():
    got = resolve_positive_class(None, ["NORMAL", "PNEUMONIA"], "pneumonia", "chest-xray")
    assert (got["index"], got["name"], got["source"]) == (1, "PNEUMONIA", "modality")
    assert resolve_positive_class("Pneumonia", ["NORMAL", "PNEUMONIA"], None)["name"] == "PNEUMONIA"
    assert resolve_positive_class(None, ["malignant", "normal, benign"], "malignant")["index"] == 0


def test_an_ambiguous_match_computes_nothing():
    got = resolve_positive_class(None, ["Pneumonia", "PNEUMONIA", "normal"], "pneumonia", "chest-xray")
    assert got["index"] is None and "matches several classes" in got["note"]
    with pytest.raises(UsageError, match="several classes"):
        resolve_positive_class("pneumonia", ["Pneumonia", "PNEUMONIA"], None)
    assert resolve_positive_class("PNEUMONIA", ["Pneumonia", "PNEUMONIA"], None)["index"] == 1  # exact wins


def test_no_positive_class_without_a_modality_default():
    got = resolve_positive_class(None, ["0", "1"], None, "ct")
    assert got["index"] is None and "--positive-class" in got["note"]
    assert resolve_positive_class(None, ["a", "b"], "melanoma")["index"] is None


def test_explicit_positive_class_wins_and_unknown_names_are_usage_errors():
    assert resolve_positive_class("benign", ["benign", "melanoma"], "melanoma")["index"] == 0
    with pytest.raises(UsageError, match="not one of the classes"):
        resolve_positive_class("tumour", ["benign", "melanoma"], "melanoma")


# ----------------------------------------------------------------- pure metrics
def test_sensitivity_specificity_and_flip_rates():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    clean = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    adv = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    m = compute_sensitivity_specificity(labels, clean, 1)
    assert m["sensitivity"]["value"] == 0.75 and m["specificity"]["value"] == 0.75
    assert m["sensitivity"]["ci_method"] == "wilson" and m["sensitivity"]["ci95"][0] < 0.75 < m["sensitivity"]["ci95"][1]
    flips = flip_rates(labels, clean, adv, 1)
    assert (flips["missed_disease"]["k"], flips["missed_disease"]["n"]) == (1, 3)  # of the 3 true positives
    assert (flips["false_alarm"]["k"], flips["false_alarm"]["n"]) == (1, 3)  # of the 3 true negatives


def test_auroc_matches_sklearn_and_delong_interval_covers_it():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).astype(bool)
    scores = rng.normal(size=200) + 1.2 * y
    scores[:20] = np.round(scores[:20])  # ties
    got = compute_auroc(scores, y)
    assert got["value"] == pytest.approx(roc_auc_score(y, scores))
    low, high = got["ci95"]
    assert got["ci_method"] == "delong" and low < got["value"] < high
    assert 0.05 < high - low < 0.3


def test_auroc_edge_cases():
    assert compute_auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], bool))["value"] == 1.0
    assert compute_auroc(np.full(6, 0.5), np.array([0, 1] * 3, bool))["value"] == 0.5
    assert compute_auroc(np.array([0.1, 0.2]), np.array([1, 1], bool))["value"] is None


# ----------------------------------------------------------------- in an audit
def test_worst_case_predictions_reproduce_the_engine_confusion(audited):
    results = audited("honest")
    labels = np.asarray(results["samples"]["labels"])
    for w in results["worst_case"]:
        preds = worst_case_predictions(results, w["eps_255"])
        confusion = np.zeros((2, 2), dtype=int)
        np.add.at(confusion, (labels, preds), 1)
        assert confusion.tolist() == w["confusion"]


def test_clinical_block_of_an_audit(audited):
    results = audited("honest")
    clinical = results["clinical"]
    assert clinical["positive_class"] == "melanoma" and clinical["source"] == "modality" and clinical["binary"]
    sens = clinical["clean"]["sensitivity"]
    assert sens["value"] == pytest.approx(results["clean"]["per_class"]["melanoma"]["accuracy"])
    assert clinical["clean"]["specificity"]["value"] == pytest.approx(results["clean"]["per_class"]["benign"]["accuracy"])
    assert clinical["clean"]["auroc"]["ci_method"] == "delong"
    aurocs = [clinical["clean"]["auroc"]["value"]] + [w["auroc"]["value"] for w in clinical["worst_case"]]
    assert aurocs == sorted(aurocs, reverse=True) and aurocs[-1] < aurocs[0]
    for w, wc in zip(clinical["worst_case"], results["worst_case"]):
        assert w["eps_255"] == wc["eps_255"]
        assert w["sensitivity"]["value"] == pytest.approx(wc["per_class"]["melanoma"]["accuracy"])
        for key in ("sensitivity", "specificity", "missed_disease", "false_alarm"):
            assert w[key]["ci_method"] == "wilson"
    scores = results["samples"]["adversarial_positive_scores"]
    assert set(scores) == {"2", "8"} and len(scores["8"]) == results["clean"]["n"]


def test_targeted_attacks_in_both_directions(audited):
    results = audited("honest")
    targeted = results["targeted"]
    labels = np.asarray(results["samples"]["labels"])
    correct = labels == np.asarray(results["samples"]["clean_pred"])
    assert targeted["positive_class"] == "melanoma" and targeted["negative_class"] == "benign"
    rates = {"positive_to_negative": [], "negative_to_positive": []}
    for row in targeted["per_eps"]:
        assert row["positive_to_negative"]["n"] == int((correct & (labels == 1)).sum())
        assert row["negative_to_positive"]["n"] == int((correct & (labels == 0)).sum())
        for key in rates:
            assert row[key]["ci_method"] == "wilson"
            rates[key].append(row[key]["value"])
    for key, values in rates.items():
        assert values == sorted(values) and values[-1] > 0, key  # cumulative over eps; 8/255 breaks some
    assert targeted["passes"]["backward_samples"] > 0

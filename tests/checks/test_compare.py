"""``medaudit compare``: paired tests per row, the regression rule (significant AND beyond
the margin), refusal of different data, HTML, unreadable files."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.comparison import ALPHA, compare_results
from auditor.results import SCHEMA_VERSION, write_results
from auditor.stats import auroc, mcnemar_exact, proportion_ci

runner = CliRunner()


@pytest.fixture()
def pair(audited, tmp_path):
    a = audited("honest")
    b = copy.deepcopy(a)
    return a, b, tmp_path


def _write(results, folder):
    folder.mkdir(parents=True, exist_ok=True)
    return write_results(folder, results)


def test_identical_audits_are_not_worse(pair):
    a, b, tmp = pair
    result = runner.invoke(app, ["compare", str(_write(a, tmp / "a")), str(_write(b, tmp / "b"))])
    assert result.exit_code == 0, result.output
    assert "not worse" in result.stdout and "worst case @ 8/255" in result.stdout
    assert "paired: the same 40 images" in result.stdout
    comparison = compare_results(a, b)
    tests = {r["label"]: r["test"]["test"] for r in comparison["rows"]}
    assert tests["clean accuracy"] == tests["worst case @ 8/255"] == tests["pgd @ 2/255"] == "McNemar exact"
    assert tests["auroc (clean)"] == tests["missed disease @ 2/255"] == "paired bootstrap"
    assert all(r["p_value"] == 1.0 and r["status"] == "same" for r in comparison["rows"])


# ------------------------------------------------- synthetic audits with per-image data
def _classifier(correct: np.ndarray, broken: dict[float, list[int]], sha: str = "d" * 64,
                ids: list[str] | None = None) -> dict:
    """A cascade audit of one attack (pgd) whose recorded numbers follow from its per-image
    data: ``correct`` clean, ``broken[eps]`` the samples pgd newly broke at eps."""
    n = len(correct)
    labels = np.arange(n) % 2
    clean_pred = np.where(correct, labels, 1 - labels)
    robust = correct.copy()
    attacks, worst = [], []
    for eps in sorted(broken):
        robust[broken[eps]] = False
        k = int(robust.sum())
        entry = {"attack": "pgd", "eps_255": eps, "robust_accuracy": k / n, "ci95": list(proportion_ci(k, n)),
                 "samples": {"broken": list(broken[eps]), "adv_pred": [int(1 - labels[i]) for i in broken[eps]],
                             "adv_confidence": [0.9] * len(broken[eps])}}
        attacks.append(entry)
        worst.append({"eps_255": eps, "robust_accuracy": k / n, "ci95": entry["ci95"], "n": n})
    return {"schema_version": SCHEMA_VERSION, "config": {"task": "classification", "mode": "cascade"},
            "model": {"name": "m"}, "status": "complete",
            "data": {"sha256": sha}, "clean": {"accuracy": correct.mean(), "n": n,
                                              "ci95": list(proportion_ci(int(correct.sum()), n))},
            "samples": {"ids": ids or [f"img{i:03d}" for i in range(n)], "labels": labels.tolist(),
                        "clean_pred": clean_pred.tolist()},
            "attacks": attacks, "worst_case": worst}


def _ab(extra_broken: int, n: int = 200):
    """A and B agree on every image except ``extra_broken`` more images B loses at 2/255."""
    correct = np.ones(n, dtype=bool)
    correct[:20] = False
    a = _classifier(correct, {2.0: list(range(20, 60)), 8.0: list(range(60, 120))})
    b = _classifier(correct, {2.0: list(range(20, 60 + extra_broken)), 8.0: list(range(60 + extra_broken, 120))})
    return a, b


def test_a_significant_regression_beyond_the_margin_exits_1(tmp_path):
    a, b = _ab(30)  # 30 images only B loses: McNemar p = 2 / 2^30
    comparison = compare_results(a, b, margin=0.02)
    row = next(r for r in comparison["rows"] if r["label"] == "worst case @ 2/255")
    assert row["test"]["test"] == "McNemar exact" and (row["test"]["only_a"], row["test"]["only_b"]) == (30, 0)
    assert row["p_value"] == pytest.approx(2 / 2 ** 30) and row["delta"] == pytest.approx(-0.15)
    assert row["delta_ci95"][0] < -0.15 < row["delta_ci95"][1] < 0
    assert row["status"] == "worse" and comparison["regressions"] == ["worst case @ 2/255", "pgd @ 2/255"]
    # the same change inside a larger margin is reported but not counted
    wide = compare_results(a, b, margin=0.2)
    assert wide["regressions"] == [] and {r["status"] for r in wide["rows"]} == {"same", "worse, within margin"}
    result = runner.invoke(app, ["compare", str(_write(a, tmp_path / "a")), str(_write(b, tmp_path / "b")),
                                 "--margin", "0.02", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["verdict"] == "worse"


def test_a_drop_the_sample_cannot_tell_from_chance_is_not_a_regression(tmp_path):
    a, b = _ab(3)  # 3 of 200 images: 1.5 points, p = 0.25
    comparison = compare_results(a, b)
    row = next(r for r in comparison["rows"] if r["label"] == "worst case @ 2/255")
    assert row["p_value"] == pytest.approx(mcnemar_exact([1, 1, 1], [0, 0, 0])["p_value"]) == 0.25 > ALPHA
    assert row["status"] == "not significant" and row["delta_ci95"][0] < 0 < row["delta_ci95"][1]
    assert comparison["regressions"] == [] and "alpha 0.05" in comparison["rule"]
    # --tolerance (the old rule: any drop beyond it) still parses, as a deprecated --margin
    result = runner.invoke(app, ["compare", str(_write(a, tmp_path / "a")), str(_write(b, tmp_path / "b")),
                                 "--tolerance", "0.01"])
    assert result.exit_code == 0, result.output
    assert "--tolerance is deprecated" in result.stderr


def test_images_in_another_order_are_paired_by_id():
    a, _ = _ab(0)
    order = np.random.default_rng(0).permutation(200)  # B lists the same images shuffled
    b = copy.deepcopy(a)
    where = {int(old): new for new, old in enumerate(order)}
    for key in ("ids", "labels", "clean_pred"):
        b["samples"][key] = [a["samples"][key][i] for i in order]
    for entry in b["attacks"]:
        entry["samples"]["broken"] = [where[i] for i in entry["samples"]["broken"]]
    comparison = compare_results(a, b)
    assert all(r["p_value"] == 1.0 and r["test"]["only_a"] == r["test"]["only_b"] == 0 for r in comparison["rows"])


def test_different_images_are_refused_unless_allowed(tmp_path):
    a, b = _ab(30)
    b["data"]["sha256"] = "e" * 64
    result = runner.invoke(app, ["compare", str(_write(a, tmp_path / "a")), str(_write(b, tmp_path / "b"))])
    assert result.exit_code == 2 and "--allow-different-data" in result.stderr
    limited = copy.deepcopy(a)
    limited["samples"]["ids"][0] = "another.png"  # same data file, another sample of it
    with pytest.raises(Exception, match="sample ids differ"):
        compare_results(a, limited)
    comparison = compare_results(a, b, allow_different_data=True)
    assert not comparison["pairing"]["paired"] and comparison["pairing"]["basis"].startswith("UNPAIRED")
    row = next(r for r in comparison["rows"] if r["label"] == "worst case @ 2/255")
    assert row["test"]["test"] == "two-proportion z-test (unpaired)" and row["p_value"] < ALPHA
    result = runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--allow-different-data"])
    assert result.exit_code == 1 and "UNPAIRED" in result.stdout


def test_auroc_and_rates_use_a_seeded_paired_bootstrap(pair):
    a, b, _ = pair
    pos = a["clinical"]["positive_index"]
    probs = np.asarray(b["samples"]["clean_probs"])
    probs[:, pos] = 1.0 - probs[:, pos]  # B ranks the other way round
    b["samples"]["clean_probs"] = probs.tolist()
    labels = np.asarray(a["samples"]["labels"])
    b["clinical"]["clean"]["auroc"]["value"] = auroc(probs[:, pos], labels == pos)
    first, again = compare_results(a, b), compare_results(a, b)
    row = next(r for r in first["rows"] if r["label"] == "auroc (clean)")
    assert row["test"]["test"] == "paired bootstrap" and row["test"]["resamples"] == 2000
    assert row["status"] == "worse" and row["p_value"] < ALPHA and row["delta_ci95"][1] < 0
    assert row == next(r for r in again["rows"] if r["label"] == "auroc (clean)")  # seeded: the same every run


def test_numbers_the_per_image_data_do_not_reproduce_fall_back_to_the_margin(pair):
    a, b, _ = pair
    b["clinical"]["worst_case"][0]["missed_disease"]["value"] += 0.1
    b["checks"]["items"][1]["status"] = "fail"
    comparison = compare_results(a, b, margin=0.02)
    row = next(r for r in comparison["rows"] if r["label"] == "missed disease @ 2/255")
    assert row["test"] is None and "do not reproduce" in row["untested"] and row["status"] == "worse (untested)"
    assert "missed disease @ 2/255" in comparison["regressions"]
    assert any("now fails" in r for r in comparison["regressions"])


def test_html_is_self_contained_and_escaped(pair):
    a, b, tmp = pair
    b["model"]["name"] = "<script>alert(1)</script>"
    b["data"]["sha256"] = "other"
    out = tmp / "cmp"
    result = runner.invoke(app, ["compare", str(_write(a, tmp / "a")), str(_write(b, tmp / "b")), "--out", str(out),
                                 "--allow-different-data"])
    assert result.exit_code == 0, result.output
    html = (out / "compare.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "http://" not in html and "https://" not in html
    assert "data differs" in html and "UNPAIRED" in html
    assert "<th>95% CI of B - A</th><th>p</th><th>test</th>" in html and "McNemar" in html
    assert json.loads((out / "compare.json").read_text())["verdict"] == "not worse"


def test_unreadable_file_exits_3(pair):
    _, _, tmp = pair
    bad = tmp / "bad.json"
    bad.write_text("{")
    result = runner.invoke(app, ["compare", str(bad), str(tmp / "missing.json")])
    assert result.exit_code == 3 and "not valid JSON" in result.stderr


def test_bad_margin_is_a_usage_error(pair):
    a, _, tmp = pair
    path = str(_write(a, tmp / "a"))
    assert runner.invoke(app, ["compare", path, path, "--margin", "2"]).exit_code == 2
    assert runner.invoke(app, ["compare", path, path, "--tolerance", "2"]).exit_code == 2


def test_hardening_log_next_to_b_model_adds_the_measured_evidence(pair):
    """B audits the hardened model: its harden log sits next to the model file, so compare
    states the before/after evidence the report's recommendation cites."""
    a, b, tmp = pair
    model = tmp / "hardened.pt"
    model.write_bytes(b"")
    eps = a["worst_case"][0]["eps_255"]
    log = {"method": "pgd-at", "settings": {"eps_255": eps}, "model_in": {"sha256": a["model"]["sha256"]}}
    (tmp / "hardened.harden.json").write_text(json.dumps(log))
    b["model"]["path"] = str(model)
    for w in b["worst_case"]:
        w["robust_accuracy"] = min(1.0, w["robust_accuracy"] + 0.3)
    out = tmp / "cmp"
    result = runner.invoke(app, ["compare", str(_write(a, tmp / "a")), str(_write(b, tmp / "b")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    before = a["worst_case"][0]["robust_accuracy"]
    expected = f"worst-case accuracy at {eps:g}/255 from {100 * before:.0f}%"
    assert f"measured defense evidence: PGD-AT at {eps:g}/255 measured: " + expected in result.stdout
    assert expected in (out / "compare.html").read_text()
    # a log that hardened some other model gives no evidence, and says why
    (tmp / "hardened.harden.json").write_text(json.dumps({**log, "model_in": {"sha256": "f" * 64}}))
    other = runner.invoke(app, ["compare", str(tmp / "a"), str(tmp / "b")])
    assert other.exit_code == 0 and "measured defense evidence" not in other.stdout
    assert "harden log's input model is not A's model" in other.stdout
    # an explicit log that is not a harden log is a usage error
    bogus = tmp / "bogus.json"
    bogus.write_text("[]")
    result = runner.invoke(app, ["compare", str(tmp / "a"), str(tmp / "b"), "--hardening-log", str(bogus)])
    assert result.exit_code == 2 and "not a `medaudit harden` log" in result.stderr


def _seg(clean_dice, worst):
    """A segmentation results dict of an older medaudit: no per-image results."""
    return {"config": {"task": "segmentation"}, "model": {"name": "unet"}, "status": "complete",
            "data": {"sha256": "s" * 64}, "clean": {"dice": clean_dice, "iou": clean_dice - 0.1},
            "worst_case": [{"eps_255": e, "dice": d, "missed_rate_any": m} for e, d, m in worst],
            "attacks": [{"attack": "seg-pgd-dice", "eps_255": e, "dice": d} for e, d, _ in worst]}


def test_segmentation_audits_compare_on_dice_and_missed_lesions():
    a = _seg(0.85, [(2, 0.6, 0.1), (4, 0.3, 0.4)])
    b = _seg(0.84, [(2, 0.7, 0.05), (4, 0.5, 0.5)])
    comparison = compare_results(a, b, 0.02, {"method": "pgd-at", "settings": {"eps_255": 4.0}})
    labels = {r["label"]: r for r in comparison["rows"]}
    assert comparison["pairing"]["per_image"] is False  # nothing to test: point estimates only
    assert labels["worst-case Dice @ 4/255"]["status"] == "untested"
    assert labels["lesion missed by any attack @ 4/255"]["status"] == "worse (untested)"  # lower is better
    assert labels["seg-pgd-dice Dice @ 2/255"]["delta"] == pytest.approx(0.1)
    assert comparison["regressions"] == ["lesion missed by any attack @ 4/255"]
    assert comparison["hardening"]["message"] == ("PGD-AT at 4/255 measured: worst-case Dice at 4/255 from 0.30 "
                                                  "to 0.50, clean Dice 0.85 -> 0.84")


def test_classification_and_segmentation_audits_do_not_compare(pair):
    a, _, _ = pair
    with pytest.raises(Exception, match="cannot compare a classification audit"):
        compare_results(a, _seg(0.8, [(2, 0.5, 0.0)]))


def _seg_images(dice_clean, dice_worst, missed):
    """Per-image segmentation results (one attack, eps 4/255) whose means are the recorded numbers."""
    n = len(dice_clean)
    mean = lambda v: float(np.nanmean([np.nan if x is None else x for x in v]))  # noqa: E731
    rate = float(np.mean([m for m in missed if m is not None]))
    return {"config": {"task": "segmentation"}, "model": {"name": "unet"}, "status": "complete",
            "data": {"sha256": "s" * 64},
            "clean": {"dice": mean(dice_clean), "iou": mean(dice_clean),
                      "samples": {"ids": [f"eye{i}" for i in range(n)], "dice": dice_clean, "iou": dice_clean}},
            "worst_case": [{"eps_255": 4.0, "dice": mean(dice_worst), "missed_rate_any": rate,
                            "samples": {"dice": dice_worst}}],
            "attacks": [{"attack": "seg-pgd-dice", "eps_255": 4.0, "dice": mean(dice_worst),
                         "samples": {"dice": dice_worst, "missed": missed}}]}


def test_segmentation_dice_is_compared_with_a_paired_bootstrap():
    rng = np.random.default_rng(3)
    clean = rng.uniform(0.6, 0.9, 60)
    worst = clean - 0.3
    a = _seg_images(clean.tolist(), worst.tolist(), [0] * 60)
    b = _seg_images(clean.tolist(), (worst - 0.03 + rng.normal(0, 0.01, 60)).tolist(), [0] * 58 + [1, 1])
    comparison = compare_results(a, b)
    rows = {r["label"]: r for r in comparison["rows"]}
    dice = rows["worst-case Dice @ 4/255"]
    assert dice["test"]["test"] == "paired bootstrap" and dice["status"] == "worse" and dice["p_value"] < ALPHA
    assert dice["delta_ci95"][0] < dice["delta"] < dice["delta_ci95"][1] < 0
    assert rows["Dice (clean)"]["status"] == "same"
    missed = rows["lesion missed by any attack @ 4/255"]  # 2 of 60 lesions newly missed: not evidence
    assert missed["test"]["test"] == "paired bootstrap" and missed["status"] == "not significant"
    assert comparison["regressions"] == ["worst-case Dice @ 4/255", "seg-pgd-dice Dice @ 4/255"]


def test_malformed_per_image_data_leaves_rows_untested_not_crashed(tmp_path):
    a, b = _ab(30)
    b["attacks"][0]["samples"]["broken"] = ["x", None]  # a hand-edited or hostile results.json
    b["samples"]["labels"] = "not a list"
    comparison = compare_results(a, b, margin=0.02)
    row = next(r for r in comparison["rows"] if r["label"] == "worst case @ 2/255")
    assert row["test"] is None and row["status"] == "worse (untested)"
    b["samples"] = "junk"
    result = runner.invoke(app, ["compare", str(_write(a, tmp_path / "a")), str(_write(b, tmp_path / "b")),
                                 "--allow-different-data"])
    assert result.exit_code == 1, result.output  # untested rows fall back to the margin rule

"""``medaudit compare``: differences, regression exit code, HTML, unreadable files."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.comparison import compare_results
from auditor.results import write_results

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


def test_worse_beyond_tolerance_exits_1(pair):
    a, b, tmp = pair
    b["worst_case"][0]["robust_accuracy"] -= 0.05
    b["attacks"][-1]["robust_accuracy"] += 0.10  # better: not a regression
    comparison = compare_results(a, b, 0.02)
    assert comparison["regressions"] == ["worst case @ 2/255"]
    row = next(r for r in comparison["rows"] if r["label"] == "worst case @ 2/255")
    assert row["delta"] == pytest.approx(-0.05) and row["status"] == "worse"
    assert compare_results(a, b, 0.06)["regressions"] == []
    result = runner.invoke(app, ["compare", str(_write(a, tmp / "a")), str(_write(b, tmp / "b")), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["verdict"] == "worse"


def test_lower_is_better_rates_and_new_check_failures(pair):
    a, b, _ = pair
    b["clinical"]["worst_case"][0]["missed_disease"]["value"] += 0.1
    b["checks"]["items"][1]["status"] = "fail"
    comparison = compare_results(a, b)
    assert "missed disease @ 2/255" in comparison["regressions"]
    assert any("now fails" in r for r in comparison["regressions"])


def test_html_is_self_contained_and_escaped(pair):
    a, b, tmp = pair
    b["model"]["name"] = "<script>alert(1)</script>"
    b["data"]["sha256"] = "other"
    out = tmp / "cmp"
    result = runner.invoke(app, ["compare", str(_write(a, tmp / "a")), str(_write(b, tmp / "b")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "compare.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "http://" not in html and "https://" not in html
    assert "data differs" in html
    assert json.loads((out / "compare.json").read_text())["verdict"] == "not worse"


def test_unreadable_file_exits_3(pair):
    _, _, tmp = pair
    bad = tmp / "bad.json"
    bad.write_text("{")
    result = runner.invoke(app, ["compare", str(bad), str(tmp / "missing.json")])
    assert result.exit_code == 3 and "not valid JSON" in result.stderr


def test_bad_tolerance_is_a_usage_error(pair):
    a, _, tmp = pair
    path = str(_write(a, tmp / "a"))
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
    return {"config": {"task": "segmentation"}, "model": {"name": "unet"}, "status": "complete",
            "clean": {"dice": clean_dice, "iou": clean_dice - 0.1},
            "worst_case": [{"eps_255": e, "dice": d, "missed_rate_any": m} for e, d, m in worst],
            "attacks": [{"attack": "seg-pgd-dice", "eps_255": e, "dice": d} for e, d, _ in worst]}


def test_segmentation_audits_compare_on_dice_and_missed_lesions():
    a = _seg(0.85, [(2, 0.6, 0.1), (4, 0.3, 0.4)])
    b = _seg(0.84, [(2, 0.7, 0.05), (4, 0.5, 0.5)])
    comparison = compare_results(a, b, 0.02, {"method": "pgd-at", "settings": {"eps_255": 4.0}})
    labels = {r["label"]: r for r in comparison["rows"]}
    assert labels["worst-case Dice @ 4/255"]["status"] == "better"
    assert labels["lesion missed by any attack @ 4/255"]["status"] == "worse"  # lower is better
    assert labels["seg-pgd-dice Dice @ 2/255"]["delta"] == pytest.approx(0.1)
    assert comparison["regressions"] == ["lesion missed by any attack @ 4/255"]
    assert comparison["hardening"]["message"] == ("PGD-AT at 4/255 measured: worst-case Dice at 4/255 from 0.30 "
                                                  "to 0.50, clean Dice 0.85 -> 0.84")


def test_classification_and_segmentation_audits_do_not_compare(pair):
    a, _, _ = pair
    with pytest.raises(Exception, match="cannot compare a classification audit"):
        compare_results(a, _seg(0.8, [(2, 0.5, 0.0)]))

"""``medaudit run --plan`` (auditor.planning) and the cost model it shares with the ETA
(auditor.costs): passes per image from each attack's parameters, bounds per step, a
measured pass, suggestions; nothing is written."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.costs import passes_per_image
from auditor.registry import get_registry
from tests.core.tiny_audit import make_data, save_model


def _ctx(num_classes: int = 2) -> SimpleNamespace:
    return SimpleNamespace(num_classes=num_classes)


def test_passes_per_image_follow_each_attacks_parameters():
    attacks = get_registry().attacks
    pgd = attacks["pgd"].parameters("thorough", _ctx())
    assert passes_per_image(attacks["pgd"], pgd)["forward_backward"] == pgd["steps"] * (pgd["restarts"] + 1)
    fgsm = passes_per_image(attacks["fgsm"], attacks["fgsm"].parameters("quick", _ctx()))
    assert (fgsm["forward_backward"], fgsm["forward"]) == (1, 0)
    square = passes_per_image(attacks["square"], attacks["square"].parameters("standard", _ctx()))
    assert (square["forward_backward"], square["forward"]) == (0, 1000)
    # AutoAttack: APGD-CE and APGD-DLR (3 classes) steps, Square's queries
    auto = passes_per_image(attacks["autoattack"], attacks["autoattack"].parameters("quick", _ctx(3)))
    assert (auto["forward_backward"], auto["forward"]) == (20, 100)


@pytest.mark.parametrize("params", [{"steps": "10"}, {"steps": -3, "queries": True}, {"queries": float("nan")},
                                    {"apgd_steps": None, "steps": 0}, {}])
def test_parameters_that_are_not_counts_fall_back_to_the_cost_rank(params):
    attack = SimpleNamespace(cost=7)
    assert passes_per_image(attack, params) == {"forward": 0.0, "forward_backward": 7.0, "basis": "cost rank"}


def test_plan_prints_bounds_and_a_measured_pass_and_writes_nothing(tmp_path):
    model, data = save_model(tmp_path / "tiny.pt"), make_data(tmp_path / "data", per_class=6)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "run", str(model), "--data", str(data), "--out", str(out), "--input-size", "16", "--no-sandbox",
        "--attacks", "fgsm,pgd,square", "--eps", "2,8", "--skip-checks", "--plan", "--json", "--max-time", "1s"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert not out.exists()  # a plan attacks nothing and writes nothing
    assert [(s["attack"], s["eps_255"]) for s in plan["steps"]] == [
        ("fgsm", 2.0), ("pgd", 2.0), ("square", 2.0), ("fgsm", 8.0), ("pgd", 8.0), ("square", 8.0)]
    pgd = plan["steps"][1]
    assert pgd["passes_per_image"]["forward_backward"] == 20  # standard budget: 20 steps
    for step in plan["steps"]:
        assert step["upper"]["images"] == plan["images"] == 12
        assert 0 <= step["expected"]["images"] <= step["upper"]["images"]
        assert 0 <= step["expected"]["seconds"] <= step["upper"]["seconds"]
    assert plan["timing"]["forward_backward_s_per_sample"] > 0 and plan["probe"]["images"] == 12
    assert plan["estimate_s"]["expected"] <= plan["estimate_s"]["upper"]
    changes = [s["change"] for s in plan["suggestions"]]
    assert "--budget quick" in changes and any(c.startswith("--attacks fgsm,pgd") for c in changes)
    quick = next(s for s in plan["suggestions"] if s["change"] == "--budget quick")
    assert quick["expected_s"] < plan["estimate_s"]["expected"]
    fewer = next(s for s in plan["suggestions"] if s["change"].startswith("--attacks"))
    assert 0 < fewer["expected_s"] < plan["estimate_s"]["upper"]

    text = CliRunner().invoke(app, [
        "run", str(model), "--data", str(data), "--out", str(out), "--input-size", "16", "--no-sandbox",
        "--attacks", "fgsm", "--eps", "2", "--skip-checks", "--plan"])
    assert text.exit_code == 0, text.output
    assert "estimated wall time" in text.stdout and "forward+backward" in text.stdout

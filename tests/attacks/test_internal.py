"""The engine's internal attacks (clinical targeting, detector-aware PGD, adversarial
training) honour the attack contract through the one step routine, stay out of listings
and of the default battery, and are refused as ``--attacks`` values."""

from __future__ import annotations

import pytest
import torch

from auditor.accounting import PassCounter
from auditor.interfaces import AttackContext
from auditor.registry import get_registry
from auditor.steps import attack_chunk

INTERNAL = ("clinical-targeted-pgd", "detector-aware-pgd", "pgd-training", "trades-training")


def _linear() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
    return model, torch.rand(8, 3, 2, 2)


def _ctx(model: torch.nn.Module, **extra) -> AttackContext:
    return AttackContext(model=model, device=torch.device("cpu"), num_classes=2, input_shape=(3, 2, 2),
                         task="classification", seed=0, batch_size=8, counter=PassCounter(), extra=extra)


class _Detector:
    """Scores inputs by their mean brightness: an attacker who evades it must stay dark."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(x), x.flatten(1).mean(1)


def test_internal_attacks_are_registered_hidden_and_outside_the_battery():
    registry = get_registry()
    listed = {name for item in registry.describe() for name in item["registered"].get("attacks", [])}
    for name in INTERNAL:
        attack = registry.get("attacks", name)
        assert not attack.public and not attack.default_battery
        assert name not in listed
    assert {"fgsm", "pgd", "square"} <= listed


@pytest.mark.parametrize("name", INTERNAL)
def test_internal_attack_contract(name):
    model, x = _linear()
    target = 1 - model(x).argmax(1) if name == "clinical-targeted-pgd" else model(x).argmax(1)
    attack = get_registry().get("attacks", name)
    ctx = _ctx(model, detector=_Detector(model))
    params = {**attack.parameters("quick", ctx), "backend": "native"}
    eps = 0.5
    first, x_adv, outside, _ = attack_chunk(attack, ctx, x, target, eps, dict(params), seed=3)
    second, _, _, _ = attack_chunk(attack, ctx, x, target, eps, dict(params), seed=3)
    assert not outside, "the attack left the eps ball or [0, 1] itself"
    assert torch.equal(first.x_adv, second.x_adv), "same seed, different images"
    assert float((x_adv - x).abs().max()) <= eps + 1e-6 and 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1
    assert not torch.equal(x_adv, x), "the attack returned its input"


def test_targeted_pgd_reaches_the_target_and_reports_it():
    model, x = _linear()
    target = 1 - model(x).argmax(1)
    attack = get_registry().get("attacks", "clinical-targeted-pgd")
    params = {"steps": 20, "restarts": 0, "step_size_eps_fraction": 0.1, "step_size_255": None}
    result, x_adv, _, _ = attack_chunk(attack, _ctx(model), x, target, 1.0, params, seed=0)
    assert bool(result.outputs["hit"].all()) and bool((result.outputs["best_target_prob"] > 0.5).all())
    assert bool((model(x_adv).argmax(1) == target).all())
    tiny, x_tiny, _, _ = attack_chunk(attack, _ctx(model), x, target, 1e-4, {**params, "step_size_255": 0.01}, seed=0)
    assert float((x_tiny - x).abs().max()) <= 1e-4 + 1e-7


def test_detector_aware_pgd_trades_success_for_a_low_score():
    """With a large penalty the attacker keeps the detector's score down; without one it does not care."""
    model, x = _linear()
    y = model(x).argmax(1)
    attack = get_registry().get("attacks", "detector-aware-pgd")
    ctx = _ctx(model, detector=_Detector(model))
    base = {"steps": 10, "step_size_255": 8.0, "threshold": 1.0}
    _, greedy, _, _ = attack_chunk(attack, ctx, x, y, 0.3, {**base, "lam": 0.0}, seed=0)
    _, stealthy, _, _ = attack_chunk(attack, ctx, x, y, 0.3, {**base, "lam": 1000.0}, seed=0)
    assert float(stealthy.mean()) < float(x.mean()) - 0.1
    assert float(stealthy.mean()) < float(greedy.mean())


def test_internal_attack_is_not_an_attacks_value(demo_inputs, tmp_path):
    from typer.testing import CliRunner

    from auditor.cli import app

    model, data = demo_inputs
    result = CliRunner().invoke(app, ["run", str(model), "--data", str(data), "--out", str(tmp_path / "out"),
                                      "--attacks", "fgsm,pgd-training", "--report-format", "none", "--quiet"])
    assert result.exit_code == 2
    assert "internal to medaudit" in result.output

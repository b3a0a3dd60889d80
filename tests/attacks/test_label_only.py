"""Label-only attacks (HopSkipJump, RayS): they see nothing but the predicted class, and
they keep to their query budget. The contract tests (eps ball, [0, 1], determinism,
breaking the tiny model at 16/255) run them through the registry like every attack."""

from __future__ import annotations

import pytest
import torch

from auditor.registry import get_registry
from plugins.attacks._label_only import LabelOracle
from tests.attacks.conftest import accuracy, make_context, run_like_engine

LABEL_ONLY = ("hopskipjump", "rays")


class SameArgmax(torch.nn.Module):
    """The tiny model's decisions with different scores: a per-sample power-of-two scale of
    the logits (exact in floating point, so no near-tie flips) keeps every argmax and
    changes every margin and probability."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        power = (x.flatten(1).sum(1, keepdim=True) * 1000).floor() % 7 - 3
        return self.model(x) * torch.pow(2.0, power)


@pytest.mark.parametrize("name", LABEL_ONLY)
def test_label_only_attacks_see_only_labels(name: str, tiny_model, inputs) -> None:
    x, y = inputs
    attack = get_registry().get("attacks", name)
    assert attack.access == "labels" and attack.threat_model == "black-box" and not attack.default_battery
    ctx = make_context(tiny_model)
    params = {**attack.parameters("quick", ctx), "backend": "native", "queries": 300}
    plain = run_like_engine(attack, ctx, x, y, 8 / 255, params)
    other = run_like_engine(attack, make_context(SameArgmax(tiny_model).eval()), x, y, 8 / 255, params)
    assert torch.equal(plain.x_adv, other.x_adv), "the attack's images depend on scores, not only labels"
    assert (plain.queries == other.queries).all()
    # a score-based attack is not blind to the same change: the test can tell the two apart
    square = get_registry().get("attacks", "square")
    sq = {**square.parameters("quick", ctx), "backend": "native"}
    assert not torch.equal(run_like_engine(square, make_context(tiny_model), x, y, 8 / 255, sq).x_adv,
                           run_like_engine(square, make_context(SameArgmax(tiny_model).eval()), x, y, 8 / 255, sq).x_adv)


def test_label_oracle_returns_only_classes(tiny_model, inputs) -> None:
    x, _ = inputs
    oracle = LabelOracle(tiny_model)
    labels = oracle(x.clone().requires_grad_(True))
    assert labels.dtype == torch.int64 and labels.shape == (len(x),) and not labels.requires_grad
    assert not any(isinstance(getattr(oracle, a, None), torch.nn.Module) for a in dir(oracle))
    assert oracle.queries == len(x)


@pytest.mark.parametrize("name", LABEL_ONLY)
@pytest.mark.parametrize("budget", [40, 300])
def test_label_only_attacks_keep_their_query_budget(name: str, budget: int, tiny_model, inputs) -> None:
    x, y = inputs
    attack = get_registry().get("attacks", name)
    ctx = make_context(tiny_model)
    params = {**attack.parameters("quick", ctx), "backend": "native", "queries": budget}
    result = run_like_engine(attack, ctx, x, y, 4 / 255, params)
    assert result.queries.shape == (len(x),) and result.queries.max() <= budget
    # every model call is accounted for, per sample
    assert ctx.counter.forward_samples == result.queries.sum() == result.details["label_queries"]
    assert float((result.x_adv - x).abs().max()) <= 4 / 255 + 1e-6


@pytest.mark.parametrize("name", LABEL_ONLY)
def test_label_only_attacks_do_better_with_more_queries(name: str, tiny_model, inputs) -> None:
    """16/255 on the tiny model: the quick budget breaks at least as much as a starved one,
    and breaks something (an attack that returns its input would not)."""
    x, y = inputs
    attack = get_registry().get("attacks", name)
    ctx = make_context(tiny_model)
    starved = run_like_engine(attack, ctx, x, y, 16 / 255, {**attack.parameters("quick", ctx), "backend": "native",
                                                           "queries": 20})
    full = run_like_engine(attack, ctx, x, y, 16 / 255, {**attack.parameters("quick", ctx), "backend": "native"})
    assert accuracy(tiny_model, full.x_adv, y) < accuracy(tiny_model, x, y)
    assert accuracy(tiny_model, full.x_adv, y) <= accuracy(tiny_model, starved.x_adv, y)

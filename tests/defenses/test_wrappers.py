"""BPDA, EoT and seeded prediction wrappers, and the --defense spec parser."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from auditor.evaluation.defenses import (ExpectationOverTransformation, SeededRandomized, StraightThrough, build_defended,
                              parse_defense)
from auditor.errors import UsageError


def test_bpda_forward_is_the_defense_and_backward_the_identity(registry):
    for name in ("jpeg", "bit-depth", "tv"):
        transform = registry.get("defenses", name).build({})
        x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        out = StraightThrough(transform)(x)
        assert torch.allclose(out, transform(x.detach()), atol=1e-6)
        weights = torch.randn_like(x)
        (grad,) = torch.autograd.grad((out * weights).sum(), x)
        assert torch.allclose(grad, weights)


def test_without_bpda_the_non_differentiable_defenses_hide_the_gradient(registry):
    """Why BPDA is needed: the gradient through rounding is zero (or absent)."""
    x = torch.rand(2, 3, 8, 8).requires_grad_(True)
    out = registry.get("defenses", "bit-depth").build({})(x)
    (grad,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    assert grad is None or float(grad.abs().max()) == 0.0


class NoisyLinear(nn.Module):
    """A randomised transform whose gradient signal is drowned in per-draw noise."""

    def forward(self, x):
        return x * (1 + torch.randn_like(x))


def _grad_variance(samples: int, repeats: int = 40) -> float:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    eot = ExpectationOverTransformation(model, NoisyLinear(), samples)
    x = torch.rand(1, 3, 2, 2)
    grads = []
    for _ in range(repeats):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(eot(xg)[0, 0], xg)
        grads.append(g.flatten())
    return float(torch.stack(grads).var(0).mean())


def test_eot_averages_and_gradient_variance_falls_with_samples():
    v1, v8, v32 = _grad_variance(1), _grad_variance(8), _grad_variance(32)
    assert v8 < 0.4 * v1 and v32 < 0.4 * v8


def test_eot_output_is_the_mean_over_draws():
    class Shift(nn.Module):
        def forward(self, x):
            return x + torch.randn(x.shape[0], 1, 1, 1)

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False))
    nn.init.constant_(model[1].weight, 1.0)
    x = torch.zeros(2, 1, 2, 2)
    torch.manual_seed(0)
    out = ExpectationOverTransformation(model, Shift(), 5)(x)
    torch.manual_seed(0)
    shifts = torch.randn(10, 1, 1, 1).reshape(5, 2)
    assert torch.allclose(out[:, 0], 4 * shifts.mean(0), atol=1e-5)


def test_seeded_prediction_is_deterministic_and_batch_independent(toy_model, registry):
    spec = parse_defense("random-smoothing:sigma=0.2,samples=9", registry)
    setup = build_defended(spec, toy_model, seed=3)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    a = setup.predict(x)
    b = setup.predict(x)
    c = torch.cat([setup.predict(x[3:]), setup.predict(x[:3])])
    assert torch.equal(a, b)
    assert torch.equal(a, torch.cat([c[3:], c[:3]]))
    other_seed = build_defended(spec, toy_model, seed=4).predict(x)
    assert torch.isfinite(a).all() and not torch.equal(a, other_seed)


def test_vote_output_argmax_is_the_majority():
    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):  # 3 of 5 copies vote class 1
            votes = torch.tensor([1, 0, 1, 0, 1])
            return nn.functional.one_hot(votes, 3).float()

    voted = SeededRandomized(Fixed(), nn.Identity(), votes=5, seed=0)(torch.zeros(1, 1, 2, 2))
    assert int(voted.argmax(1)) == 1 and torch.isfinite(voted).all()


def test_adaptive_views(toy_model, registry):
    jpeg = build_defended(parse_defense("jpeg", registry), toy_model)
    assert jpeg.adaptive_method == "bpda"
    median = build_defended(parse_defense("median:size=3", registry), toy_model)
    assert median.adaptive_method == "direct"
    smooth = build_defended(parse_defense("random-smoothing:eot_samples=4", registry), toy_model)
    assert smooth.adaptive_method == "eot" and smooth.attack.samples == 4 and smooth.votes == 32
    x = torch.rand(2, 1, 8, 8).requires_grad_(True)
    for setup in (jpeg, median, smooth):
        (grad,) = torch.autograd.grad(nn.functional.cross_entropy(setup.attack(x), torch.tensor([0, 1])), x)
        assert float(grad.abs().sum()) > 0


@pytest.mark.parametrize("text, fragment", [
    ("", "no defense named"),
    ("nope", "unknown defense 'nope'"),
    ("jpeg:quality", "is not key=value"),
    ("jpeg:quality=high", "not an integer"),
    ("jpeg:quality=0", "outside"),
    ("jpeg:speed=1", "unknown parameter 'speed'"),
    ("jpeg:quality=5,quality=6", "given twice"),
    ("median:eot_samples=4", "randomised defenses only"),
    ("random-smoothing:eot_samples=0", "between 1 and"),
    ("tv:weight=nan", "NaN"),
])
def test_parse_errors_are_one_line_usage_errors(registry, text, fragment):
    with pytest.raises(UsageError) as info:
        parse_defense(text, registry)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_parse_fills_defaults_and_types(registry):
    spec = parse_defense(" tv:steps=10 ", registry)
    assert spec.params == {"weight": 0.05, "steps": 10} and isinstance(spec.params["steps"], int)
    assert spec.eot_samples is None
    assert parse_defense("random-smoothing", registry).eot_samples == 8

"""The attack contract, for every registered classification attack and each backend.

Every (attack, backend) pair must keep the input's shape and dtype, stay inside the eps
ball (plus float tolerance) and inside [0, 1], never make robust accuracy exceed clean
accuracy, and give the same images twice for the same seed (the engine seeds
``params["seed"]`` and the global generators before each call; see ``run_like_engine``).
"""

from __future__ import annotations

import pytest
import torch

from auditor.registry import get_registry
from tests.attacks.conftest import accuracy, attack_backends, make_context, run_like_engine

EPS = 8 / 255
# ART's per-sample attacks are slow even on a tiny model: fewer images keep the suite fast.
FEW = {("zoo", "art"): 2, ("cw", "art"): 1, ("cw-l2", "art"): 2}


@pytest.mark.parametrize("name,backend", attack_backends())
def test_attack_contract(name: str, backend: str, tiny_model: torch.nn.Module, inputs) -> None:
    x, y = inputs
    n = FEW.get((name, backend), len(x))
    x, y = x[:n], y[:n]
    attack = get_registry().get("attacks", name)
    ctx = make_context(tiny_model)
    params = {**attack.parameters("quick", ctx), "backend": backend}

    first = run_like_engine(attack, ctx, x, y, EPS, params).x_adv
    second = run_like_engine(attack, make_context(tiny_model), x, y, EPS, params).x_adv

    assert first.shape == x.shape and first.dtype == x.dtype
    assert float((first - x).abs().max()) <= EPS + 1e-6, "perturbation leaves the eps ball"
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0, "values leave [0, 1]"
    assert accuracy(tiny_model, first, y) <= accuracy(tiny_model, x, y)
    assert torch.equal(first, second), "same seed, different adversarial images"


@pytest.mark.parametrize("name,backend", [p for p in attack_backends() if p[1] == "native"])
def test_native_attacks_break_the_tiny_model(name: str, backend: str, tiny_model: torch.nn.Module, inputs) -> None:
    """An attack that returns its input unchanged passes the contract above; this one it
    does not. At 16/255 every native attack breaks at least one of the tiny model's inputs."""
    x, y = inputs
    attack = get_registry().get("attacks", name)
    ctx = make_context(tiny_model)
    params = {**attack.parameters("quick", ctx), "backend": backend}
    x_adv = run_like_engine(attack, ctx, x, y, 16 / 255, params).x_adv
    assert accuracy(tiny_model, x_adv, y) < accuracy(tiny_model, x, y)


def test_every_classification_attack_is_covered() -> None:
    """The parametrisation comes from the registry: a new attack is tested without edits."""
    pairs = attack_backends()
    names = {name for name, _ in pairs}
    assert {"fgsm", "pgd", "cw", "autoattack", "square", "zoo"} <= names
    assert ("cw", "native") in pairs and ("cw", "art") in pairs and ("zoo", "native") in pairs

"""Native fast paths against ART on the same inputs and the same budget.

Through the engine-facing ``Attack.run`` API, the native backend must reach the same or a
lower robust accuracy than the ART backend. Tolerance: one sample (1/n of the inputs),
since the two implementations take different (equally valid) steps; a native path that
is weaker than ART by more than that fails.

Only clean-correct inputs are attacked, as in the engine. ART's CW-L-inf and ZOO work one
sample at a time, so they get 3 inputs; FGSM, PGD, Square and AutoAttack (APGD and Square,
native vs ART) get all of them.
"""

from __future__ import annotations

import pytest
import torch

from auditor.registry import get_registry
from tests.attacks.conftest import accuracy, make_context, run_like_engine

TOLERANCE_SAMPLES = 1


def correct_inputs(model: torch.nn.Module, inputs, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = inputs
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    return (x, y) if n is None else (x[:n], y[:n])


def robust_accuracy(model: torch.nn.Module, name: str, backend: str, x: torch.Tensor, y: torch.Tensor,
                    eps: float) -> float:
    attack = get_registry().get("attacks", name)
    ctx = make_context(model)
    params = {**attack.parameters("quick", ctx), "backend": backend}
    return accuracy(model, run_like_engine(attack, ctx, x, y, eps, params).x_adv, y)


@pytest.mark.parametrize("name,n,eps_255", [
    ("fgsm", None, 4), ("fgsm", None, 8),
    ("pgd", None, 4),
    ("autoattack", None, 2),
    ("square", None, 4),
    ("cw", 3, 8),
    ("zoo", 3, 8),
])
def test_native_at_least_as_strong_as_art(name: str, n: int | None, eps_255: float, tiny_model, inputs) -> None:
    x, y = correct_inputs(tiny_model, inputs, n)
    assert len(x) >= 3, "the tiny model should classify most of its inputs correctly"
    eps = eps_255 / 255
    native = robust_accuracy(tiny_model, name, "native", x, y, eps)
    art = robust_accuracy(tiny_model, name, "art", x, y, eps)
    assert native <= art + TOLERANCE_SAMPLES / len(x) + 1e-9, (
        f"{name} eps={eps_255}/255: native robust accuracy {native:.3f} > ART {art:.3f} on {len(x)} inputs"
    )


def test_fgsm_backends_agree(tiny_model, inputs) -> None:
    """FGSM is one deterministic step: both backends should give (almost) the same images."""
    x, y = correct_inputs(tiny_model, inputs)
    attack = get_registry().get("attacks", "fgsm")
    outs = []
    for backend in ("native", "art"):
        ctx = make_context(tiny_model)
        params = {**attack.parameters("quick", ctx), "backend": backend}
        outs.append(run_like_engine(attack, ctx, x, y, 4 / 255, params).x_adv)
    same = (outs[0] - outs[1]).abs() <= 1e-5
    assert float(same.float().mean()) > 0.99

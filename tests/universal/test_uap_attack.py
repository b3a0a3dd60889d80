"""The UAP attack (plugins.attacks.uap): one shared perturbation, inside the eps ball,
seeded, hidden from --attacks, and the batched native backend at least as strong as ART's
UniversalPerturbation on the same images and budget (tolerance: one image)."""

from __future__ import annotations

import torch

from auditor.registry import get_registry
from auditor.steps import attack_chunk
from tests.attacks.conftest import _one_thread, inputs, make_context, tiny_model  # noqa: F401 - fixtures

EPS = 16 / 255


def _fit(model, x, y, backend: str, eps: float = EPS):
    attack = get_registry().get("attacks", "uap")
    ctx = make_context(model)
    params = {**attack.parameters("quick", ctx), "backend": backend}
    return attack_chunk(attack, ctx, x, y, eps, params, seed=7)


@torch.no_grad()
def _fooling_rate(model, x, delta, eps):
    clean = model(x).argmax(1)
    adv = model(torch.clamp(torch.min(torch.max(x + delta, x - eps), x + eps), 0, 1)).argmax(1)
    return float((adv != clean).float().mean())


def test_uap_is_internal_and_one_perturbation_for_every_image(tiny_model, inputs):
    attack = get_registry().get("attacks", "uap")
    assert not attack.public and not attack.default_battery
    x, y = inputs
    result, x_adv, outside, _ = _fit(tiny_model, x, y, "native")
    again, _, _, _ = _fit(tiny_model, x, y, "native")
    delta = result.outputs["delta"]
    assert delta.shape == (1, *x.shape[1:])
    assert not outside and float(delta.abs().max()) <= EPS + 1e-6
    assert torch.equal(delta, again.outputs["delta"]), "same seed, different perturbation"
    interior = (x > EPS) & (x < 1 - EPS)  # where clipping to [0, 1] cannot bite, every image moved by delta
    assert torch.allclose((x_adv - x)[interior], delta.expand_as(x)[interior], atol=1e-6)
    assert _fooling_rate(tiny_model, x, delta, EPS) > 0, "a perturbation that fools nothing at 16/255"


def test_native_uap_at_least_as_strong_as_art(tiny_model, inputs):
    x, y = inputs
    native = _fit(tiny_model, x, y, "native")[0].outputs["delta"]
    art = _fit(tiny_model, x, y, "art")[0].outputs["delta"]
    assert float(art.abs().max()) <= EPS + 1e-6
    rate_native, rate_art = _fooling_rate(tiny_model, x, native, EPS), _fooling_rate(tiny_model, x, art, EPS)
    assert rate_native > 0
    assert rate_native >= rate_art - 1 / len(x) - 1e-9, f"native {rate_native:.3f} < ART {rate_art:.3f}"
    print(f"fooling rate at 16/255 on {len(x)} images: native {rate_native:.3f}, ART {rate_art:.3f}")

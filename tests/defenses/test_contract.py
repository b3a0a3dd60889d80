"""Contract of every registered defense: images in [0,1] in, images in [0,1] out, same
shape and dtype, deterministic unless randomised, randomised ones reproducible when seeded."""

from __future__ import annotations

import pytest
import torch

from auditor.registry import get_registry

NAMES = get_registry().names("defenses")


def images(n: int = 4, c: int = 3, h: int = 16, w: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, c, h, w), generator=torch.Generator().manual_seed(seed))


def test_builtins_are_registered():
    assert {"jpeg", "median", "bit-depth", "tv", "random-smoothing", "model-eot"} <= set(NAMES)
    assert set(NAMES) - set(TRANSFORMING) == {"model-eot"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_range(name, channels):
    defense = get_registry().get("defenses", name)
    x = images(c=channels)
    torch.manual_seed(0)
    out = defense.build({})(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_family_and_flags_declared(name):
    defense = get_registry().get("defenses", name)
    assert defense.family in ("preprocessing", "detection", "training")
    assert isinstance(defense.differentiable, bool) and isinstance(defense.randomized, bool)


@pytest.mark.parametrize("name", [n for n in NAMES if not get_registry().get("defenses", n).randomized])
def test_deterministic_defenses_repeat(name):
    module = get_registry().get("defenses", name).build({})
    x = images()
    assert torch.equal(module(x), module(x))


# model-eot applies nothing: it marks a model whose own randomness the audit must average over
TRANSFORMING = [n for n in NAMES if not getattr(get_registry().get("defenses", n), "passthrough", False)]


@pytest.mark.parametrize("name", [n for n in TRANSFORMING if get_registry().get("defenses", n).randomized])
def test_randomized_defenses_vary_but_repeat_under_a_seed(name):
    module = get_registry().get("defenses", name).build({})
    x = images()
    torch.manual_seed(1)
    a = module(x)
    torch.manual_seed(1)
    b = module(x)
    c = module(x)
    assert torch.equal(a, b)
    assert not torch.equal(b, c)


@pytest.mark.parametrize("name", TRANSFORMING)
def test_defense_changes_a_noisy_image(name):
    """A defense that returns its input unchanged defends nothing."""
    module = get_registry().get("defenses", name).build({})
    x = images()
    torch.manual_seed(0)
    assert float((module(x) - x).abs().max()) > 1e-3


def test_jpeg_quality_orders_the_distortion():
    from plugins.defenses.jpeg import jpeg_roundtrip

    smooth = torch.linspace(0, 1, 32)[None, None, :, None].expand(2, 3, 32, 32).contiguous()
    x = (smooth + 0.05 * images(2, 3, 32, 32)).clamp(0, 1)
    err = {q: float((jpeg_roundtrip(x, q) - x).abs().mean()) for q in (10, 50, 95)}
    assert err[10] > err[50] > err[95]


def test_median_removes_salt_noise_and_keeps_flat_images():
    from plugins.defenses.median import median_filter

    flat = torch.full((1, 1, 9, 9), 0.3)
    assert torch.allclose(median_filter(flat, 3), flat)
    salted = flat.clone()
    salted[0, 0, 4, 4] = 1.0
    assert torch.allclose(median_filter(salted, 3), flat)


def test_median_matches_a_direct_computation():
    from plugins.defenses.median import median_filter

    x = images(1, 1, 7, 7)
    out = median_filter(x, 3)
    assert torch.isclose(out[0, 0, 3, 3], x[0, 0, 2:5, 2:5].flatten().median())


def test_bit_depth_lands_on_the_grid():
    from plugins.defenses.bit_depth import BitDepthReduction

    out = BitDepthReduction(3)(images())
    assert torch.allclose(out * 7, (out * 7).round(), atol=1e-6)
    assert len(out.unique()) <= 8


def test_tv_lowers_total_variation_and_keeps_flat_images():
    from plugins.defenses.tv import tv_chambolle

    def tv(x):
        return float((x[..., 1:, :] - x[..., :-1, :]).abs().sum() + (x[..., :, 1:] - x[..., :, :-1]).abs().sum())

    x = images()
    assert tv(tv_chambolle(x, 0.1, 30)) < 0.5 * tv(x)
    flat = torch.full((1, 3, 8, 8), 0.6)
    assert torch.allclose(tv_chambolle(flat, 0.1, 30), flat, atol=1e-6)
    assert tv(tv_chambolle(x, 0.2, 30)) < tv(tv_chambolle(x, 0.05, 30))


def test_random_smoothing_noise_has_the_requested_scale():
    module = get_registry().get("defenses", "random-smoothing").build({"sigma": 0.05})
    x = torch.full((8, 3, 32, 32), 0.5)
    torch.manual_seed(0)
    assert abs(float((module(x) - x).std()) - 0.05) < 0.005

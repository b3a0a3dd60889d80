"""The corruption contract over every registered family: severity 0 is the identity, the
output stays in [0, 1] with the input's shape and channels, each image's randomness comes
from its own seed (same seed, same image, whatever the batch), and the mean change grows
with severity."""

from __future__ import annotations

import pytest
import torch

from auditor.interfaces import SEVERITIES
from auditor.registry import load_registry

REGISTRY = load_registry()
FAMILIES = REGISTRY.names("corruptions")


def _images(corruption, n=3, size=24):
    channels = 3 if 3 in corruption.channels else 1
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blob = ((xx ** 2 + yy ** 2) < 0.4).float()  # an edge for the blurs, flat areas for the rest
    x = 0.25 + 0.5 * blob + 0.1 * torch.rand((n, channels, size, size), generator=g)
    return x.clamp(0, 1)


@pytest.mark.parametrize("name", FAMILIES)
def test_severity_zero_is_the_identity(name):
    corruption = REGISTRY.get("corruptions", name)
    x = _images(corruption)
    out = corruption.corrupt(x, corruption.parameters(0, "dermoscopy", (24, 24)), [1, 2, 3])
    assert torch.equal(out, x)


@pytest.mark.parametrize("name", FAMILIES)
def test_output_in_range_with_shape_and_channels_kept(name):
    corruption = REGISTRY.get("corruptions", name)
    x = _images(corruption)
    for severity in SEVERITIES:
        out = corruption.corrupt(x, corruption.parameters(severity, "chest-xray", (24, 24)), [1, 2, 3])
        assert out.shape == x.shape and out.dtype == x.dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_per_image_seed_makes_it_deterministic_and_batch_independent(name):
    corruption = REGISTRY.get("corruptions", name)
    x = _images(corruption, n=3)
    params = corruption.parameters(5, "fundoscopy", (24, 24))
    whole = corruption.corrupt(x, params, [11, 12, 13])
    assert torch.equal(whole, corruption.corrupt(x, params, [11, 12, 13]))
    alone = corruption.corrupt(x[2:], params, [13])  # the same image, seed, in another batch
    assert torch.allclose(whole[2:], alone, atol=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_change_grows_with_severity(name):
    corruption = REGISTRY.get("corruptions", name)
    x = _images(corruption, size=64)  # large enough that the 224-px blur ladders are not sub-pixel
    changes = [float((corruption.corrupt(x, corruption.parameters(s, "mri", (64, 64)), [1, 2, 3]) - x)
                     .abs().mean()) for s in (1, 5)]
    assert changes[1] > changes[0] > 0


def test_every_modality_default_names_registered_families():
    for modality in REGISTRY.all("modalities"):
        assert modality.corruptions, modality.name
        for name in modality.corruptions:
            REGISTRY.get("corruptions", name)


def test_parameters_record_the_ladder_and_scale():
    blur = REGISTRY.get("corruptions", "defocus-blur")
    params = blur.parameters(3, "dermoscopy", (112, 112))
    assert params["ladder"] == "dermoscopy" and params["radius_alias"] == (6, 0.3)
    assert params["scale"] == pytest.approx(0.5) and params["radius_px"] == pytest.approx(3.0)
    assert REGISTRY.get("corruptions", "jpeg").parameters(2, "ct", (28, 28)) == {
        "severity": 2, "ladder": "default", "quality": 18}


def test_white_balance_refuses_grey_images():
    from auditor.errors import UsageError

    corruption = REGISTRY.get("corruptions", "white-balance")
    with pytest.raises(UsageError, match="3-channel"):
        corruption.corrupt(torch.rand(1, 1, 8, 8), corruption.parameters(1, "dermoscopy", (8, 8)), [0])

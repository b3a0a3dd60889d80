"""Contract tests for every registered segmentation attack, and the losses they share."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from auditor.accounting import CountingModel, PassCounter
from auditor.interfaces import AttackContext
from auditor.registry import get_registry
from plugins.attacks.seg_losses import IGNORE_INDEX, seg_objective
from plugins.metrics import compute_dice
from plugins.metrics._common import logits_to_labels
from tests.segmentation.conftest import SIZE, ThresholdSeg, lesion_images

EPS = 8 / 255


def segmentation_attack_names() -> list[str]:
    return sorted(n for n, a in get_registry().attacks.items() if "segmentation" in a.tasks and a.public)


def make_context(model: torch.nn.Module) -> AttackContext:
    counter = PassCounter()
    for p in model.parameters():
        p.requires_grad_(False)
    return AttackContext(
        model=CountingModel(model.eval(), counter), device=torch.device("cpu"), num_classes=2,
        input_shape=(3, SIZE, SIZE), task="segmentation", seed=0, batch_size=8, counter=counter,
    )


def inputs(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    images, masks = lesion_images(n, seed=3)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(masks > 0).long()
    y[:, :, :2] = IGNORE_INDEX  # a region of interest that leaves out the two left columns
    return x, y


def params_for(name: str, ctx: AttackContext, budget: str = "quick", seed: int = 123) -> dict:
    attack = get_registry().attacks[name]
    return {**attack.parameters(budget, ctx), "backend": attack.default_backend, "seed": seed}


def test_the_battery_is_registered():
    names = segmentation_attack_names()
    assert {"seg-fgsm-bce", "seg-fgsm-dice", "seg-pgd-bce", "seg-pgd-dice", "seg-lesion-removal", "seg-square"} <= set(names)
    for name in names:
        attack = get_registry().attacks[name]
        assert attack.tasks == ("segmentation",) and attack.name == name
        assert attack.parameters("standard", make_context(ThresholdSeg()))["loss"] in ("bce", "dice", "background")
    pgd = get_registry().attacks["seg-pgd-dice"].parameters("standard", make_context(ThresholdSeg()))
    assert (pgd["steps"], pgd["step_size_255"], pgd["loss"]) == (20, 1.0, "dice")


@pytest.mark.parametrize("name", segmentation_attack_names())
def test_contract(name):
    attack = get_registry().attacks[name]
    ctx = make_context(ThresholdSeg())
    x, y = inputs()
    x_before, y_before = x.clone(), y.clone()
    params = params_for(name, ctx)
    result = attack.run(ctx, x, y, EPS, params)
    x_adv = result.x_adv
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert torch.equal(x, x_before) and torch.equal(y, y_before), "the attack changed its inputs"
    assert float((x_adv - x).abs().max()) > 0, "the attack did nothing"
    again = attack.run(make_context(ThresholdSeg()), x.clone(), y.clone(), EPS, dict(params))
    assert torch.equal(again.x_adv, x_adv), "not deterministic under a seed"

    with torch.no_grad():
        clean_pred = logits_to_labels(ctx.model.model(x))
        adv_pred = logits_to_labels(ctx.model.model(x_adv))
    truth, roi = y.clamp(min=0), y != IGNORE_INDEX
    if params.get("targeted"):
        assert (adv_pred * roi).sum() < (clean_pred * roi).sum()
    else:
        assert compute_dice(adv_pred, truth, roi).mean() < compute_dice(clean_pred, truth, roi).mean()
    if attack.threat_model == "black-box":
        assert result.queries is not None and (result.queries == params["queries"]).all()
        assert ctx.counter.backward_samples == 0
        assert ctx.counter.forward_samples == params["queries"] * len(x)
    else:
        assert ctx.counter.backward_samples > 0


@pytest.mark.parametrize("name", ["seg-pgd-bce", "seg-lesion-removal"])
def test_thorough_budget_with_random_starts(name):
    attack = get_registry().attacks[name]
    ctx = make_context(ThresholdSeg())
    x, y = inputs(2)
    params = params_for(name, ctx, budget="thorough")
    assert params["starts"] > 1
    first = attack.run(ctx, x, y, EPS, params).x_adv
    second = attack.run(make_context(ThresholdSeg()), x, y, EPS, dict(params)).x_adv
    assert torch.equal(first, second)
    assert float((first - x).abs().max()) <= EPS + 1e-6


@pytest.mark.parametrize("name", ["seg-fgsm-bce", "seg-pgd-dice", "seg-lesion-removal"])
def test_multiclass_outputs(name):
    attack = get_registry().attacks[name]
    ctx = make_context(ThresholdSeg(out_channels=3))
    x, y = inputs(2)
    x_adv = attack.run(ctx, x, y, EPS, params_for(name, ctx)).x_adv
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6 and float((x_adv - x).abs().max()) > 0


def test_pixels_outside_the_roi_are_not_perturbed():
    """The 3x3 model sees one pixel beyond the ROI, so columns 2 or more pixels outside it
    get no gradient and no perturbation."""
    x, y = inputs(2)
    y = y.clone()
    y[:, :, SIZE // 2:] = IGNORE_INDEX
    for name in ("seg-fgsm-bce", "seg-pgd-dice", "seg-lesion-removal"):
        ctx = make_context(ThresholdSeg())
        x_adv = get_registry().attacks[name].run(ctx, x, y, EPS, params_for(name, ctx)).x_adv
        assert float((x_adv - x)[..., SIZE // 2 + 2:].abs().max()) == 0.0, name
        assert float((x_adv - x)[..., : SIZE // 2].abs().max()) > 0.0, name


# ---------------------------------------------------------------------------- losses
def test_bce_and_dice_objectives_by_hand():
    logits = torch.tensor([[[[2.0, -1.0, 0.5, 3.0]]]])
    target = torch.tensor([[[1, 0, 1, IGNORE_INDEX]]])
    z, t = logits[0, 0, 0, :3].double(), torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    bce = F.binary_cross_entropy_with_logits(z, t)
    assert seg_objective(logits, target, "bce").item() == pytest.approx(bce.item())
    p = torch.sigmoid(z)
    dice = (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    assert seg_objective(logits, target, "dice").item() == pytest.approx(1 - dice.item())
    assert seg_objective(logits, target, "background").item() == pytest.approx(-F.softplus(z).mean().item())


def test_ignored_pixels_do_not_change_any_objective():
    target = torch.tensor([[[1, 0, IGNORE_INDEX, IGNORE_INDEX]]])
    a = torch.tensor([[[[2.0, -1.0, 0.5, 3.0]]]])
    b = torch.tensor([[[[2.0, -1.0, -9.0, 7.0]]]])
    for loss in ("bce", "dice", "background"):
        assert seg_objective(a, target, loss).item() == pytest.approx(seg_objective(b, target, loss).item())
    k_a = torch.cat([-a, a, a - 1], dim=1)
    k_b = torch.cat([-b, b, b - 1], dim=1)
    for loss in ("bce", "dice", "background"):
        assert seg_objective(k_a, target, loss).item() == pytest.approx(seg_objective(k_b, target, loss).item())


def test_multiclass_bce_is_cross_entropy():
    logits = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 3, (2, 4, 5), generator=torch.Generator().manual_seed(1))
    expected = F.cross_entropy(logits.double(), target, reduction="none").flatten(1).mean(1)
    assert torch.allclose(seg_objective(logits, target, "bce"), expected)


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError):
        seg_objective(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), "focal")

"""GPU readiness of the native paths: no host round trip per step.

A ``.item()``, ``.cpu()``, ``.numpy()``, ``.tolist()`` or ``float``/``int``/``bool`` of a
tensor inside a step loop stalls a GPU every step. No GPU is needed to catch one: the
test counts those calls on the CPU and requires the count not to change with the number
of steps (or ZOO iterations). ZOO's per-iteration compaction to the still-robust samples
(a boolean index) is deliberate and not counted here: it syncs the size of the index
once per ``2 * coordinates + 1`` queries and saves the queries of every broken sample.

The last test runs the native attacks on a GPU when one is present (skipped otherwise).
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from plugins.attacks.autoattack import apgd_native
from plugins.attacks.pgd import pgd_native
from plugins.attacks.zoo import zoo_native
from tests.attacks.conftest import make_context, run_like_engine

HOST_SYNCS = ("item", "cpu", "numpy", "tolist", "__float__", "__int__", "__bool__", "__index__")


@pytest.fixture
def host_syncs(monkeypatch: pytest.MonkeyPatch) -> Counter:
    counts: Counter = Counter()
    for name in HOST_SYNCS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return counts


def test_counter_sees_host_syncs(host_syncs: Counter) -> None:
    """The instrument works: it would catch a loop that calls ``.item()``."""
    t = torch.ones(3)
    for _ in range(4):
        t.sum().item()
    assert host_syncs["item"] == 4


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_pgd_steps_have_no_host_syncs(loss: str, tiny_model, inputs, host_syncs: Counter) -> None:
    x, y = inputs
    counts = []
    for steps in (2, 8):
        host_syncs.clear()
        pgd_native(tiny_model, x, y, 8 / 255, 2 / 255, steps, 0, loss, seed=0)
        counts.append(sum(host_syncs.values()))
    assert counts[0] == counts[1], f"host syncs grow with PGD steps: {counts}"


def test_apgd_steps_have_no_host_syncs(tiny_model, inputs, host_syncs: Counter) -> None:
    x, y = inputs
    counts = []
    for steps in (3, 12):
        host_syncs.clear()
        apgd_native(tiny_model, x, y, 8 / 255, steps, 1, "ce", seed=0)
        counts.append(sum(host_syncs.values()))
    assert counts[0] == counts[1], f"host syncs grow with APGD steps: {counts}"


def test_zoo_iterations_have_no_host_syncs(tiny_model, inputs, host_syncs: Counter) -> None:
    x, y = inputs
    counts = []
    for iterations in (1, 4):
        host_syncs.clear()
        # A tiny eps keeps the samples robust, so every iteration really runs.
        _, used = zoo_native(tiny_model, x, y, 0.1 / 255, 1 + iterations * (2 * 8 + 1), 8, seed=0, chunk=64)
        counts.append(sum(host_syncs.values()))
    assert int(used.max()) == 1 + 4 * 17, "the longer run did all its iterations"
    assert counts[0] == counts[1], f"host syncs grow with ZOO iterations: {counts}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU available here")
@pytest.mark.parametrize("name", ["fgsm", "pgd", "cw", "autoattack", "zoo"])
def test_native_attacks_run_on_the_gpu(name: str, tiny_model, inputs) -> None:
    from auditor.registry import get_registry

    device = torch.device("cuda")
    model = tiny_model.to(device)
    try:
        x, y = (t.to(device) for t in inputs)
        attack = get_registry().get("attacks", name)
        ctx = make_context(model)
        ctx.device = device
        params = {**attack.parameters("quick", ctx), "backend": "native"}
        x_adv = run_like_engine(attack, ctx, x, y, 8 / 255, params).x_adv
        assert x_adv.device.type == "cuda"
        assert float((x_adv - x).abs().max()) <= 8 / 255 + 1e-6
    finally:
        tiny_model.to("cpu")

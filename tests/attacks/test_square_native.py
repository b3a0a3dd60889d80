"""The native Square Attack's query accounting: one forward pass per query per sample,
the budget respected, and no queries spent on a sample once it is misclassified."""

from __future__ import annotations

import numpy as np
import torch

from auditor.registry import get_registry
from tests.attacks.conftest import make_context, run_like_engine


def native_square(model):
    attack = get_registry().get("attacks", "square")
    ctx = make_context(model)
    return attack, ctx, {**attack.parameters("quick", ctx), "backend": "native"}


def test_one_forward_per_query_and_fooled_samples_stop(tiny_model, inputs):
    x, y = inputs
    attack, ctx, params = native_square(tiny_model)
    result = run_like_engine(attack, ctx, x, y, 8 / 255, params)
    queries = np.asarray(result.queries)
    assert queries.shape == (len(x),) and queries.min() >= 1 and queries.max() <= params["queries"]
    assert ctx.counter.forward_samples == int(queries.sum())  # nothing but the queries reach the model
    assert ctx.counter.backward_samples == 0  # black-box
    with torch.no_grad():
        fooled = (tiny_model(result.x_adv).argmax(1) != y).numpy()
    assert fooled.any(), "8/255 should break some of the tiny model's inputs"
    # a sample that ended fooled before the budget ran out stopped querying then
    assert (queries[fooled] < params["queries"]).any()
    # a sample still robust spent the whole budget
    assert (queries[~fooled] == params["queries"]).all()


def test_same_seed_same_images(tiny_model, inputs):
    x, y = inputs
    attack, ctx, params = native_square(tiny_model)
    a = run_like_engine(attack, ctx, x, y, 4 / 255, params)
    b = run_like_engine(attack, ctx, x, y, 4 / 255, params)
    torch.testing.assert_close(a.x_adv, b.x_adv, rtol=0, atol=0)
    assert (a.x_adv - x).abs().max() <= 4 / 255 + 1e-6 and a.x_adv.min() >= 0 and a.x_adv.max() <= 1

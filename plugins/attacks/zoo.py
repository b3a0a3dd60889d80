"""ZOO: zeroth-order optimisation, a score-based black-box attack.

Chen et al., "ZOO: Zeroth Order Optimization based Black-box Attacks to Deep Neural
Networks without Training Substitute Models", AISec 2017. Black-box (needs only the
model's scores), untargeted, CW margin loss, audited in the L-inf ball.

Query budget per sample: quick 500, standard 1000, thorough 5000.

Backends:

* ``native`` (default): batched coordinate-wise estimates. Each iteration picks
  ``coordinates`` random input coordinates per still-robust sample, estimates the sign of
  the loss gradient along each with a symmetric difference taken at the two vertices of
  the eps ball (2 queries per coordinate), moves those coordinates to the better vertex,
  and spends one query to check success. All samples and coordinates of an iteration go
  through the model in large batches, on the GPU when there is one.
* ``art``: ``art.attacks.evasion.ZooAttack`` (L2, one sample at a time, ADAM coordinate
  updates, ``nb_parallel`` coordinates per step, ``variable_h`` 1e-4); the result is
  projected onto the eps ball. Very slow: ART processes one image at a time.
"""

from __future__ import annotations

from typing import Any

import torch

from auditor.art_adapter import art_classifier, from_numpy, one_hot, seed_everything, to_numpy
from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import SampleStreams, check_budget, margin_loss, project, sample_streams

QUERIES = {"quick": 500, "standard": 1000, "thorough": 5000}
COORDINATES = 64


@torch.no_grad()
def zoo_native(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, queries: int,
               coordinates: int, seed: int | SampleStreams, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns adversarial images and the queries spent per sample.

    Queries per sample: 1 initial check, then per iteration ``2 * coordinates`` estimates
    and 1 success check, while the budget lasts and the sample is still robust.

    Everything stays on the device. The only host synchronisation per iteration is the
    compaction to the still-robust samples (a boolean index, whose size the host must
    know): it costs one tiny transfer and saves the ``2 * coordinates`` queries of every
    sample broken so far. No ``.item()``/``.cpu()`` and no per-sample Python loops. Each
    sample's coordinates come from its own stream."""
    n = len(x)
    shape = x.shape[1:]
    flat_dim = x[0].numel()
    coordinates = min(coordinates, flat_dim)
    streams = SampleStreams.of(seed, n, x.device)
    x_adv = x.clone()
    used = torch.ones(n, dtype=torch.long, device=x.device)  # the initial check
    idx = torch.arange(n, device=x.device)[model(x).argmax(1) == y]
    per_iter = 2 * coordinates + 1
    per_forward = max(chunk // (2 * coordinates), 1)  # samples per model call in the estimate
    for _ in range(max((queries - 1) // per_iter, 0)):
        k = idx.numel()
        if k == 0:
            break
        # ``coordinates`` distinct random coordinates per sample, drawn in one call.
        coords = streams.subset(idx).rand((flat_dim,)).topk(coordinates, dim=1).indices
        base = x_adv[idx].reshape(k, flat_dim)
        orig = x[idx].reshape(k, flat_dim).gather(1, coords)
        up = torch.clamp(orig + eps, max=1.0)
        down = torch.clamp(orig - eps, min=0.0)
        labels = y[idx]
        scores = torch.empty(k, coordinates, 2, device=x.device)
        for start in range(0, k, per_forward):
            stop = min(k, start + per_forward)
            m = stop - start
            # candidates (m, coordinates, 2, D): one coordinate moved to each vertex of the ball
            cand = base[start:stop, None, None, :].repeat(1, coordinates, 2, 1)
            rows = torch.arange(m, device=x.device)[:, None]
            cols = torch.arange(coordinates, device=x.device)[None, :]
            cand[rows, cols, 0, coords[start:stop]] = up[start:stop]
            cand[rows, cols, 1, coords[start:stop]] = down[start:stop]
            logits = model(cand.reshape(-1, *shape))
            lab = labels[start:stop].repeat_interleave(2 * coordinates)
            scores[start:stop] = margin_loss(logits, lab).reshape(m, coordinates, 2)
        best = torch.where(scores[..., 0] >= scores[..., 1], up, down)
        base.scatter_(1, coords, best)
        x_adv[idx] = base.reshape(k, *shape)
        used[idx] += per_iter
        idx = idx[model(x_adv[idx]).argmax(1) == labels]
    return x_adv, used


class ZOO(Attack):
    name = "zoo"
    title = "ZOO"
    threat_model = "black-box"
    access = "scores"
    cost = 80
    default_battery = True
    backends = ("native", "art")
    default_backend = "native"
    reference = "Chen et al., AISec 2017"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "loss": "cw-margin", "queries": QUERIES[budget], "coordinates": COORDINATES,
                "art_nb_parallel": COORDINATES, "art_variable_h": 1e-4, "art_learning_rate": 0.01,
                "art_initial_const": 1.0, "targeted": False}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        if params["backend"] == "art":
            from art.attacks.evasion import ZooAttack

            seed_everything(params["seed"])
            iters = max(params["queries"] // (2 * params["art_nb_parallel"]), 1)
            attack = ZooAttack(
                art_classifier(ctx), confidence=0.0, targeted=False, learning_rate=params["art_learning_rate"],
                max_iter=iters, binary_search_steps=1, initial_const=params["art_initial_const"],
                abort_early=True, use_resize=False, use_importance=False, nb_parallel=params["art_nb_parallel"],
                batch_size=1, variable_h=params["art_variable_h"], verbose=False,
            )
            x_adv = from_numpy(attack.generate(to_numpy(x), y=one_hot(y, ctx.num_classes)), x)
            return AttackResult(project(x_adv, x, eps))
        x_adv, used = zoo_native(ctx.model, x, y, eps, params["queries"], params["coordinates"],
                                 sample_streams(params, len(x), x.device), chunk=max(ctx.batch_size * 8, 256))
        return AttackResult(x_adv, queries=used.cpu().numpy())

"""Targeted PGD towards a chosen class: the clinical-direction attack.

Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018,
in its targeted form: L-inf steps ascending log p(target). White-box, L-inf, targeted.
``y`` holds the *target* class per sample. The engine runs it in both clinical directions
(disease -> healthy, healthy -> disease) with the budget of PGD; it is internal
(``public = False``): not an ``--attacks`` value.

``outputs``: ``best_target_prob`` (per sample, the highest target probability over all
iterates), ``hit`` (whether any iterate predicted the target) and ``final_hit`` (whether the
last iterate of the last start did: what untargeted PGD reports, which the validity checks
reuse on two-class models, see ``auditor.evaluation.battery``) and ``stopped``.

``params["settle_target_prob"]`` (optional, one value per sample, no restarts): a sample stops
at the first iterate that predicts the target with a probability above its value; its
``best_target_prob`` and ``hit`` are final then, its ``final_hit`` is not (``stopped`` says
which). The clinical metrics pass it where attacking further cannot change them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import check_budget, project, sample_streams, step_size
from plugins.attacks.pgd import BUDGET as PGD_BUDGET


class TargetedPGD(Attack):
    name = "clinical-targeted-pgd"
    title = "targeted PGD (clinical directions)"
    threat_model = "white-box"
    cost = 20
    backends = ("native",)
    default_backend = "native"
    reference = "Madry et al., ICLR 2018 (targeted)"
    public = False

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "loss": "ce", "targeted": True, **PGD_BUDGET[budget]}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]) -> AttackResult:
        alpha = step_size(params, eps)
        steps, restarts = int(params.get("steps", 10)), int(params.get("restarts", 0))
        model, target = ctx.model, y
        best_p = torch.full((len(x),), -1.0, device=x.device)
        hit = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        final_hit = torch.zeros_like(hit)
        best_x = x.clone()
        streams = sample_streams(params, len(x), x.device)  # one per sample: its batch never matters
        # Per sample, a target probability past which, once it is a hit, nothing more is
        # wanted (the caller's ranking of that sample is final): it stops there. Without
        # restarts only, so a sample's trajectory is the same one, just cut short.
        settle = params.get("settle_target_prob") if restarts == 0 else None
        stop_at = None if settle is None else torch.as_tensor(settle, dtype=torch.float64, device=x.device)
        stopped = torch.zeros_like(hit)
        for _ in range(max(restarts, 1)):
            if restarts > 0:
                x_adv = project(x + (streams.rand(x.shape[1:]).to(x.dtype) * 2 - 1) * eps, x, eps)
            else:
                x_adv = x.clone()
            for step in range(steps + 1):
                last = step == steps
                # the rows still running (all of them unless some stopped: no host sync then)
                rows = None if stop_at is None else (~stopped).nonzero().squeeze(1)
                if rows is not None and rows.numel() == 0:
                    break
                xs = x_adv if rows is None else x_adv[rows]
                ts = target if rows is None else target[rows]
                xg = xs.detach().requires_grad_(not last)
                with torch.set_grad_enabled(not last):
                    logits = model(xg)
                    log_p = F.log_softmax(logits.double(), 1).gather(1, ts[:, None]).squeeze(1)
                p = log_p.detach().exp()
                now = logits.detach().argmax(1) == ts
                at = slice(None) if rows is None else rows  # where this step's rows sit in the batch
                better = p.float() > best_p[at]
                best_p[at] = torch.where(better, p.float(), best_p[at])
                best_x[better if rows is None else rows[better]] = xs[better].detach()
                hit[at] |= now
                if last:
                    final_hit[at] = now
                    break
                (grad,) = torch.autograd.grad(log_p.sum(), xg)
                moved = project(xs.detach() + alpha * grad.sign(), x if rows is None else x[rows], eps)
                if rows is None:
                    x_adv = moved
                else:
                    x_adv[rows] = moved
                    stopped[rows] = now & (p > stop_at[rows])
        return AttackResult(best_x, outputs={"best_target_prob": best_p, "hit": hit, "final_hit": final_hit,
                                             "stopped": stopped})

"""Transfer attacks: PGD or AutoAttack crafted on a surrogate model, shown to the target.

Papernot et al., "Transferability in machine learning", 2016; the survey's main black-box
threat in medical imaging. Black-box for the target: crafting needs only the surrogate
(``medaudit run TARGET --surrogate MODEL``); the target sees each crafted image once, when
the engine evaluates it, so the attack itself spends no target queries (``queries`` 0).
Parameters: the source attack's own, at the audit's budget (``source_params``), and the
surrogate's identity (file name, format, sha256). Added to the audit by ``--surrogate``,
never an ``--attacks`` value; cheap for the target, so it runs first in the cascade.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditor.errors import UsageError
from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.transfer import SURROGATE_KEY, craft


def _source(name: str) -> Attack:
    from auditor.registry import get_registry  # the registry loads this module: look up at call time

    return get_registry().get("attacks", name)


class TransferAttack(Attack):
    threat_model = "black-box"
    access = "labels"
    cost = 5
    backends = ("native",)
    default_backend = "native"
    reference = "Papernot, McDaniel and Goodfellow 2016"
    public = False  # added by --surrogate

    def __init__(self, source: str) -> None:
        self.source = source
        self.name = f"transfer-{source}"
        self.title = f"Transfer {source.upper() if source == 'pgd' else 'AutoAttack'} from a surrogate"

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        surrogate = ctx.extra.get(SURROGATE_KEY)
        source = _source(self.source)
        crafting_ctx = surrogate.ctx if surrogate is not None else ctx
        return {"source_attack": self.source, "surrogate": surrogate.identity if surrogate is not None else None,
                "source_params": {**source.parameters(budget, crafting_ctx), "backend": source.default_backend}}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float,
            params: dict[str, Any]) -> AttackResult:
        surrogate = ctx.extra.get(SURROGATE_KEY)
        if surrogate is None:
            raise UsageError(f"attack '{self.name}' crafts on a surrogate model: pass --surrogate MODEL")
        x_adv = craft(_source(self.source), surrogate.ctx, x, y, eps, params["source_params"], params.get("seed"),
                      sample_seeds=params.get("sample_seeds"))
        return AttackResult(x_adv, queries=np.zeros(len(x)))

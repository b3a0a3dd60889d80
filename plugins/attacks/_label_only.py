"""What a label-only (decision-based) attack may see of the model: the predicted class.

``LabelOnlyAttack.run`` hands its subclass a :class:`LabelOracle` instead of the attack
context, so a decision-based attack cannot read logits, probabilities or gradients even by
accident: the oracle returns int64 class indices computed without autograd, and the
wrapped model is not an attribute a subclass can reach by name. That makes the attack's
numbers valid for a service that returns only a class, and a test checks it (any change
to the logits that keeps the argmax leaves the adversarial images unchanged).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.numerics import check_budget, generator, project

ORACLE_ROWS = 512  # images per model call: gradient estimates query thousands at once


class LabelOracle:
    """Images in [0, 1] in, predicted class indices (N,) int64 out; counts the images asked."""

    __slots__ = ("__predict", "queries")

    def __init__(self, model: torch.nn.Module) -> None:
        def predict(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([model(x[i : i + ORACLE_ROWS]).argmax(1) for i in range(0, len(x), ORACLE_ROWS)])

        self.__predict = predict
        self.queries = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        return self.__predict(x.detach()).long()

    def fooled(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N,) bool: the model's label for ``x`` is not ``y``."""
        return self(x) != y


class LabelOnlyAttack(Attack):
    """Base of the decision-based attacks: L-inf, untargeted, one query budget per sample."""

    threat_model = "black-box"
    access = "labels"
    cost = 80  # after the score-based attacks: a cascade hands them only what still stands
    backends = ("native",)
    default_backend = "native"
    queries: ClassVar[dict[str, int]] = {}
    settings: ClassVar[dict[str, Any]] = {}  # the attack's own parameters beyond the query budget

    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        check_budget(budget)
        return {"norm": "linf", "access": "labels", "queries": self.queries[budget], "targeted": False,
                **self.settings}

    def run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float,
            params: dict[str, Any]) -> AttackResult:
        oracle = LabelOracle(ctx.model)
        x_best, spent = type(self).search(oracle, x, y, eps, params, generator(params["seed"], x.device))
        return AttackResult(project(x_best, x, eps), queries=spent.cpu().numpy().astype(np.float64),
                            details={"label_queries": int(oracle.queries)})

    @staticmethod
    @abstractmethod
    def search(oracle: LabelOracle, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any],
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Adversarial candidates (projected onto the eps ball by ``run``) and the queries
        each sample spent, never more than ``params["queries"]``. Sees only the oracle."""


def linf_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).abs().amax(1)

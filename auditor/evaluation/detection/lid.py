"""Local intrinsic dimensionality (Ma et al., "Characterizing Adversarial Subspaces Using
Local Intrinsic Dimensionality", ICLR 2018).

The maximum-likelihood LID estimate of an image's representation among its ``k`` nearest
clean neighbours, ``-(1/k sum_i log(d_i / d_k))^-1``: adversarial regions have a higher
local dimension. Computed at two layers, the penultimate features and the logits, each
standardised on calibration images and summed. Differences from the paper: the
neighbours come from a fixed set of clean reference images (the paper uses the
mini-batch, which makes a score depend on its batch-mates), and no logistic regression is
fitted on adversarial examples (the detector sees none, so it is not tuned to the attacks
it is evaluated on). Differentiable: the adaptive attacker lowers the estimate directly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from auditor.evaluation.detection.features import CalibratedDetector


def lid_mle(points: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) MLE of local intrinsic dimensionality of ``points`` among ``reference``."""
    k = max(1, min(k, len(reference)))
    dist = torch.cdist(points, reference.to(points)).topk(k, dim=1, largest=False).values.clamp(min=1e-12)
    ratio = torch.log(dist / dist[:, -1:]).mean(1)
    return -1.0 / ratio.clamp(max=-1e-12)


class LIDDetector(CalibratedDetector):
    name = "lid"
    reference = "Ma et al., ICLR 2018"
    reference_max = 300

    def __init__(self, model: nn.Module, seed: int = 0, k: int = 20) -> None:
        super().__init__(model, seed)
        self.k = int(k)
        self.ref_feats: torch.Tensor | None = None
        self.ref_logits: torch.Tensor | None = None

    def fit_reference(self, logits: torch.Tensor, feats: torch.Tensor, y: torch.Tensor) -> None:
        self.ref_feats, self.ref_logits = feats, logits

    def raw(self, logits: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        return torch.stack([lid_mle(feats, self.ref_feats, self.k), lid_mle(logits, self.ref_logits, self.k)], dim=1)

    def describe(self) -> dict[str, Any]:
        return {**self.describe_fit(), "layer": "input of the last nn.Linear, and the logits", "k": self.k,
                "neighbours": "fixed clean reference set (not the mini-batch)"}

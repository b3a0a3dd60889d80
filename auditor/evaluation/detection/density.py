"""Kernel density and Bayesian uncertainty (Feinman et al., "Detecting Adversarial Samples
from Artifacts", arXiv:1703.00410, 2017).

* **Kernel density** (KD): a Gaussian kernel density over the penultimate features of clean
  reference images of the *predicted* class; adversarial images land off the class
  manifold, where the density is low. Raw term: ``-log KD``. Bandwidth: the median
  within-class distance between reference features (the paper tunes it per data set).
* **Bayesian uncertainty** (BU): Monte-Carlo dropout, here on the penultimate features
  before the model's last linear layer (the models medaudit audits rarely keep dropout
  layers of their own): ``mean_t |p_t|^2 - |mean_t p_t|^2`` over ``mc_samples`` dropout
  masks. The masks are drawn once, seeded, when the detector is fitted, so a score is a
  deterministic function of the image and the adaptive attacker differentiates the very
  masks the detector uses (a white-box attacker knows them).

The two terms are combined as the sum of their z-scores on calibration images (the paper
fits a logistic regression on adversarial examples; this detector sees none, as the
Mahalanobis one sees none), so it is not tuned to the attacks it is evaluated on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from auditor.evaluation.detection.features import CalibratedDetector


class KernelDensityDetector(CalibratedDetector):
    name = "kd-bu"
    reference = "Feinman et al., arXiv:1703.00410 (2017)"

    def __init__(self, model: nn.Module, seed: int = 0, dropout: float = 0.5, mc_samples: int = 16) -> None:
        super().__init__(model, seed)
        self.dropout = float(dropout)
        self.mc_samples = int(mc_samples)
        self.centres: list[torch.Tensor] = []
        self.bandwidth = 1.0
        self.masks: torch.Tensor | None = None

    def fit_reference(self, logits: torch.Tensor, feats: torch.Tensor, y: torch.Tensor) -> None:
        num_classes = logits.shape[1]
        self.centres = [feats[y == c] for c in range(num_classes)]
        within = [torch.cdist(c, c)[torch.triu_indices(len(c), len(c), 1).unbind()] for c in self.centres if len(c) > 1]
        distances = torch.cat(within) if within else torch.ones(1, dtype=feats.dtype)
        self.bandwidth = float(distances.median().clamp(min=1e-6))
        gen = torch.Generator().manual_seed(self.seed)
        keep = (torch.rand(self.mc_samples, feats.shape[1], generator=gen) >= self.dropout).to(feats)
        self.masks = keep / (1 - self.dropout)

    def raw(self, logits: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        pred = logits.argmax(1).detach()
        neg_log_kd = torch.zeros(len(feats), dtype=feats.dtype, device=feats.device)
        for c, centres in enumerate(self.centres):
            rows = pred == c
            if not bool(rows.any()):
                continue
            if len(centres) == 0:  # a class without reference images: no density; always flagged (Standardised)
                neg_log_kd = neg_log_kd.masked_fill(rows, float("nan"))
                continue
            sq = torch.cdist(feats[rows], centres.to(feats)) ** 2
            log_kd = torch.logsumexp(-sq / self.bandwidth**2, dim=1) - torch.log(torch.tensor(float(len(centres))))
            neg_log_kd = neg_log_kd.index_put((rows.nonzero().squeeze(1),), -log_kd)
        masks = self.masks.to(feats)  # (T, D)
        dropped = (feats[None] * masks[:, None, :]).reshape(-1, feats.shape[1])
        probs = torch.softmax(self.extractor.head(dropped.to(self._head_dtype())).double(), dim=1)
        probs = probs.reshape(len(masks), len(feats), -1)
        uncertainty = (probs**2).sum(2).mean(0) - (probs.mean(0) ** 2).sum(1)
        return torch.stack([neg_log_kd, uncertainty], dim=1)

    def _head_dtype(self) -> torch.dtype:
        weight = getattr(self.extractor.head_layer, "weight", None)
        return weight.dtype if weight is not None else torch.float32

    def describe(self) -> dict[str, Any]:
        return {**self.describe_fit(), "bandwidth": self.bandwidth, "dropout": self.dropout,
                "mc_samples": self.mc_samples, "terms": ["-log kernel density (predicted class)",
                                                        "Bayesian uncertainty (MC dropout on the features)"]}

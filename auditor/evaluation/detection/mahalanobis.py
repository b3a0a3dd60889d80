"""The Mahalanobis detector of Lee et al., "A Simple Unified Framework for Detecting
Out-of-Distribution Samples and Adversarial Attacks" (NeurIPS 2018), on penultimate-layer
features: class means and one shared covariance fitted on clean, labelled data; the score
of an image is its smallest squared Mahalanobis distance to a class mean (large =
suspicious). Simplifications: one layer, no input pre-processing, no logistic-regression
ensemble over layers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from auditor.evaluation.detection.features import Detector, FeatureExtractor


class MahalanobisDetector(Detector):
    """Class-conditional Gaussian with a shared covariance on penultimate features."""

    name = "mahalanobis"
    reference = "Lee et al., NeurIPS 2018"

    def __init__(self, model: nn.Module, ridge: float = 1e-6) -> None:
        self.extractor = FeatureExtractor(model)
        self.ridge = ridge
        self.means: torch.Tensor | None = None
        self.precision: torch.Tensor | None = None
        self.classes: list[int] = []

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128) -> "MahalanobisDetector":
        feats = torch.cat([self.extractor(x[i : i + batch_size])[1].double() for i in range(0, len(x), batch_size)])
        labels = y.to(feats.device)
        self.classes = sorted(int(c) for c in labels.unique())
        means = torch.stack([feats[labels == c].mean(0) for c in self.classes])
        centred = feats - means[torch.searchsorted(torch.tensor(self.classes, device=feats.device), labels)]
        cov = centred.T @ centred / max(len(feats), 1)
        scale = float(torch.diagonal(cov).mean()) or 1.0
        cov = cov + self.ridge * scale * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
        self.means = means
        self.precision = torch.linalg.pinv(cov, hermitian=True)
        self.n_fit = int(len(feats))
        self.feature_dim = int(feats.shape[1])
        return self

    def score_features(self, feats: torch.Tensor) -> torch.Tensor:
        """(N,) smallest squared Mahalanobis distance to a class mean, float64, differentiable."""
        if self.means is None or self.precision is None:
            raise RuntimeError("fit the detector first")
        diff = feats.double()[:, None, :] - self.means[None]  # (N, K, D)
        dist = torch.einsum("nkd,de,nke->nk", diff, self.precision, diff)
        return dist.min(dim=1).values

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, score), differentiable in ``x`` (for adaptive attacks)."""
        logits, feats = self.extractor(x)
        return logits, self.score_features(feats)

    def attack_scale(self, threshold: float, clean_scores: np.ndarray) -> float:
        """What the adaptive attacker divides the score by: the threshold (a distance, > 0)."""
        return threshold

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "reference": self.reference, "layer": "input of the last nn.Linear",
                "feature_dim": getattr(self, "feature_dim", None), "n_fit": getattr(self, "n_fit", None),
                "classes": self.classes, "covariance": "shared (tied) across classes, ridge-regularised"}

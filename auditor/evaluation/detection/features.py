"""Penultimate-layer features, the classifier head behind them, and the calibration that
puts detector scores on one scale."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from auditor.errors import InputError


def _last_linear(model: nn.Module) -> nn.Module | None:
    """The last linear layer, eager (``nn.Linear``) or scripted (``original_name == "Linear"``)."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear) or getattr(module, "original_name", None) == "Linear":
            last = module
    return last


class FeatureExtractor(nn.Module):
    """``forward(x) -> (logits, penultimate features)``, differentiable.

    Eager models: a forward pre-hook on the last ``nn.Linear`` captures its input.
    TorchScript models (which take no hooks): their ``features`` method when they export
    one (medaudit's reference architectures do), then ``forward`` for the logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        last = _last_linear(model)
        self.linear = last if isinstance(last, nn.Linear) else None
        self.head_layer = last
        self.features_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
        if self.linear is None:
            inner = model
            while inner is not None and not callable(getattr(inner, "features", None)):
                inner = getattr(inner, "model", None)
            if inner is None:
                raise InputError(
                    "cannot reach the penultimate layer: the model has no nn.Linear layer to hook "
                    "(TorchScript models need a 'features' method)"
                )
            self.features_fn = inner.features
        self._captured: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.features_fn is not None:
            return self.model(x), self.features_fn(x).flatten(1)
        self._captured.clear()
        handle = self.linear.register_forward_pre_hook(lambda _m, inputs: self._captured.append(inputs[0]))
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        if not self._captured:
            raise InputError("the model's last nn.Linear layer was not called in forward")
        return logits, self._captured[-1].flatten(1)

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        """The last linear layer applied to (perturbed) penultimate features: what Bayesian
        uncertainty needs to redo the prediction under dropout."""
        weight = getattr(self.head_layer, "weight", None)
        if weight is None or weight.shape[1] != feats.shape[1]:
            raise InputError("cannot reach the model's last linear layer from its penultimate features")
        return torch.nn.functional.linear(feats, weight, getattr(self.head_layer, "bias", None))


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def split_fit(n: int, seed: int, reference_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of the fit images into a reference set (kernel centres, neighbours) and
    a calibration set (score mean and spread), so no image is scored against itself."""
    order = np.random.default_rng(seed).permutation(n)
    n_ref = min(reference_max, max(1, n // 2))
    return np.sort(order[:n_ref]), np.sort(order[n_ref:] if n - n_ref >= 2 else order[:n_ref])


class Standardised:
    """Mean and spread of each raw score on calibration images: the detector's score is the
    sum of the z-scores, so terms in different units weigh the same."""

    FLAGGED = 1e6  # the score of an image a raw term cannot judge (NaN): always above the threshold

    def __init__(self, raw: torch.Tensor) -> None:  # raw: (N, terms); NaN entries are left out
        valid = ~torch.isnan(raw)
        count = valid.sum(0).clamp(min=1)
        filled = torch.where(valid, raw, torch.zeros_like(raw))
        self.mean = filled.sum(0) / count
        spread = torch.where(valid, raw - self.mean, torch.zeros_like(raw)).pow(2).sum(0) / (count - 1).clamp(min=1)
        self.std = spread.sqrt().clamp(min=1e-12)

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        return ((raw - self.mean.to(raw)) / self.std.to(raw)).sum(1).nan_to_num(nan=self.FLAGGED)


class Detector:
    """What the detection audit needs: ``forward(x) -> (logits, score)`` differentiable in
    ``x`` (large score = suspicious), batched scoring, and the scale the adaptive attacker
    divides the score by."""

    name = "detector"
    reference = ""
    extractor: FeatureExtractor

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def score(self, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        return torch.cat([self.forward(x[i : i + batch_size])[1] for i in range(0, len(x), batch_size)]).cpu()

    def attack_scale(self, threshold: float, clean_scores: np.ndarray) -> float:
        """Scores that sum z-scores can sit near zero, so the attacker's weight is per unit of
        their clean spread (threshold minus median), not per unit of the threshold."""
        return max(threshold - float(np.median(clean_scores)), 1e-6)


class CalibratedDetector(Detector):
    """A detector whose score is the sum of standardised raw terms (:class:`Standardised`):
    subclasses fit their reference set in :meth:`fit_reference` and compute the (N, terms)
    raw scores in :meth:`raw`."""

    reference_max = 500

    def __init__(self, model: nn.Module, seed: int = 0) -> None:
        self.extractor = FeatureExtractor(model)
        self.seed = int(seed)
        self.standardise: Standardised | None = None
        self.classes: list[int] = []

    def fit_reference(self, logits: torch.Tensor, feats: torch.Tensor, y: torch.Tensor) -> None:  # pragma: no cover
        raise NotImplementedError

    def raw(self, logits: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128) -> "CalibratedDetector":
        pairs = [self.extractor(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        logits = torch.cat([p[0] for p in pairs]).double()
        feats = torch.cat([p[1] for p in pairs]).double()
        labels = y.to(feats.device)
        self.classes = sorted(int(c) for c in labels.unique())
        ref, cal = split_fit(len(feats), self.seed, self.reference_max)
        ref_t, cal_t = torch.as_tensor(ref, device=feats.device), torch.as_tensor(cal, device=feats.device)
        self.fit_reference(logits[ref_t], feats[ref_t], labels[ref_t])
        self.standardise = Standardised(self.raw(logits[cal_t], feats[cal_t]))
        self.n_fit, self.n_reference, self.n_calibration = int(len(feats)), int(len(ref)), int(len(cal))
        self.feature_dim = int(feats.shape[1])
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.standardise is None:
            raise RuntimeError("fit the detector first")
        logits, feats = self.extractor(x)
        return logits, self.standardise(self.raw(logits.double(), feats.double()))

    def describe_fit(self) -> dict[str, Any]:
        return {"name": self.name, "reference": self.reference, "layer": "input of the last nn.Linear",
                "feature_dim": getattr(self, "feature_dim", None), "n_fit": getattr(self, "n_fit", None),
                "n_reference": getattr(self, "n_reference", None),
                "n_calibration": getattr(self, "n_calibration", None), "classes": self.classes,
                "score": "sum of z-scores (mean and spread from the calibration images)"}

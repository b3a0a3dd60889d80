"""Query-only targets: a model medaudit can send images to and read answers from, and
nothing else (a model behind an inference service, a sealed ONNX Runtime session).

A model loader returns a :class:`QueryTarget` instead of a differentiable module. It is
still a ``torch.nn.Module`` (images in [0, 1] in, one row per image out), so the clean
pass, the score-based attacks (Square, ZOO) and the engine's bookkeeping run unchanged;
but its output carries no gradient, and what it returns decides which attacks apply:

* ``logits`` or ``probabilities``: attacks that read scores (``Attack.access == "scores"``)
  or labels; probabilities are audited as log-probabilities (same softmax, same ranking);
* ``label``: only attacks that read the predicted class (``access == "labels"``).

White-box attacks and gradient-based checks are skipped with a stated reason. The target
counts every image and request it sends (``usage``), which is what a service bills.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

OUTPUT_KINDS = ("logits", "probabilities", "label")
FINGERPRINT_IMAGES = 8
FINGERPRINT_SEED = 16_2026  # fixed: the probe set is the same on every run and every resume
FINGERPRINT_DECIMALS = 4  # outputs rounded before hashing: float noise of a re-run must not count
_LOG_FLOOR = 1e-12


class QueryTarget(torch.nn.Module, ABC):
    """A model that answers queries only. Subclasses implement :meth:`query` and say what it
    returns in ``outputs`` (one of :data:`OUTPUT_KINDS`); ``identity`` describes the model
    for ``results.json`` (never a credential) and ``usage`` counts the traffic so far."""

    outputs: str = "logits"
    kind: str = "query-only target"  # how the report names it, e.g. "inference service"

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes

    @abstractmethod
    def query(self, images: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 images in [0, 1] -> (N, K) scores, or (N,) int class labels
        when ``outputs == "label"``. Raises :class:`auditor.errors.InputError` on a bad answer."""

    def identity(self) -> dict[str, Any]:
        """Name, versions, platform: what the target says about itself."""
        return {}

    def usage(self) -> dict[str, Any]:
        """Traffic so far: at least ``images`` (queries) and ``requests``."""
        return {"images": 0, "requests": 0}

    @property
    def access(self) -> tuple[str, ...]:
        """The ``Attack.access`` values this target allows."""
        return ("labels",) if self.outputs == "label" else ("scores", "labels")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        answer = np.asarray(self.query(x.detach().cpu().numpy().astype(np.float32, copy=False)))
        return torch.from_numpy(as_logits(answer, self.outputs, self.num_classes)).to(x.device)


def as_logits(answer: np.ndarray, outputs: str, num_classes: int | None) -> np.ndarray:
    """A target's answer as (N, K) float32 rows the engine softmaxes: logits as they are,
    probabilities as log-probabilities (softmax gives them back), labels one-hot."""
    if outputs == "label":
        labels = answer.astype(np.int64).reshape(-1)
        k = int(num_classes or (labels.max() + 1 if labels.size else 1))
        return np.eye(k, dtype=np.float32)[labels]
    scores = answer.astype(np.float32).reshape(answer.shape[0], -1)
    if outputs == "probabilities":
        return np.log(np.clip(scores, _LOG_FLOOR, None)).astype(np.float32)
    return scores


def query_target(module: torch.nn.Module | None) -> QueryTarget | None:
    """The query-only target inside ``module`` (wrappers such as the one-logit adapter
    included), or None for an ordinary differentiable model."""
    if module is None:
        return None
    for sub in module.modules():
        if isinstance(sub, QueryTarget):
            return sub
    return None


def refusal(access: str, target: QueryTarget) -> str | None:
    """Why an attack that needs ``access`` cannot run on ``target``; None when it can."""
    if access in target.access:
        return None
    if access == "gradients":
        return f"needs input gradients (white-box); the {target.kind} answers queries only"
    return f"needs {access}; the {target.kind} returns {target.outputs} only"


def probe_images(input_shape: tuple[int, int, int], n: int = FINGERPRINT_IMAGES) -> np.ndarray:
    """The fixed probe set of the behavioural fingerprint: seeded uniform images."""
    rng = np.random.default_rng(FINGERPRINT_SEED)
    return rng.random((n, *(int(v) for v in input_shape)), dtype=np.float32)


def behaviour_fingerprint(target: QueryTarget, input_shape: tuple[int, int, int]) -> dict[str, Any]:
    """A hash of the target's answers on the fixed probe set: a service has no file to
    hash, so two fingerprints that differ mean the model behind it changed."""
    answer = np.asarray(target.query(probe_images(input_shape)), dtype=np.float64)
    rounded = np.round(answer, FINGERPRINT_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
    return {"sha256": hashlib.sha256(rounded.tobytes()).hexdigest(), "images": FINGERPRINT_IMAGES,
            "seed": FINGERPRINT_SEED, "decimals": FINGERPRINT_DECIMALS}

"""Counting the model's forward and backward passes.

Every attack talks to the model through :class:`CountingModel`, so the number of samples
pushed forward and the number of input gradients taken are known for each attack
(``results.json`` ``attacks[].passes``), whichever backend ran it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from auditor.models import call_model


@dataclass
class PassCounter:
    forward_samples: int = 0
    backward_samples: int = 0
    forward_calls: int = 0
    backward_calls: int = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "forward_samples": self.forward_samples,
            "backward_samples": self.backward_samples,
            "forward_calls": self.forward_calls,
            "backward_calls": self.backward_calls,
        }

    def since(self, before: dict[str, int]) -> dict[str, int]:
        now = self.snapshot()
        return {k: now[k] - before[k] for k in now}


class CountingModel(torch.nn.Module):
    """Wraps a model; counts forward passes and backward passes through its output."""

    def __init__(self, model: torch.nn.Module, counter: PassCounter) -> None:
        super().__init__()
        self.model = model
        self.counter = counter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = call_model(self.model, x)  # the model's own errors: a bad model, not a medaudit bug
        n = int(x.shape[0])
        self.counter.forward_samples += n
        self.counter.forward_calls += 1
        if out.requires_grad:
            counter = self.counter

            def _count_backward(grad: torch.Tensor) -> None:
                counter.backward_samples += n
                counter.backward_calls += 1

            out.register_hook(_count_backward)
        return out


def time_one_pass(model: torch.nn.Module, x: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    """Median wall time of one forward and one forward+backward pass on ``x``, in seconds
    per sample. The denominator of the overhead ratio."""
    fwd, fwdbwd = [], []
    with torch.no_grad():
        call_model(model, x)  # warm-up; a model that fails here is reported as a bad model
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            model(x)
        _sync(x)
        fwd.append(time.perf_counter() - t0)
        xg = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        out = call_model(model, xg)
        if out.requires_grad:  # a model without gradients is for black-box attacks only
            out.sum().backward()
        _sync(x)
        fwdbwd.append(time.perf_counter() - t0)
    n = max(int(x.shape[0]), 1)
    fwd.sort()
    fwdbwd.sort()
    return {
        "forward_s_per_sample": fwd[len(fwd) // 2] / n,
        "forward_backward_s_per_sample": fwdbwd[len(fwdbwd) // 2] / n,
        "batch_size": n,
    }


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)

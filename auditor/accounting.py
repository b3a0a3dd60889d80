"""Counting the model's forward and backward passes.

Every attack talks to the model through :class:`CountingModel`, so the number of samples
pushed forward and the number of input gradients taken are known for each attack
(``results.json`` ``attacks[].passes``), whichever backend ran it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from auditor.models import call_model


@dataclass
class PassCounter:
    forward_samples: int = 0
    backward_samples: int = 0
    forward_calls: int = 0
    backward_calls: int = 0
    # batch size -> [forward calls, backward calls]: the overhead ratio prices each call at
    # the cost of one pass at its own batch size (a cascade hands small batches to the attacks)
    by_size: dict[int, list[int]] = field(default_factory=dict)

    def sizes(self) -> dict[int, list[int]]:
        return {b: list(v) for b, v in self.by_size.items()}

    def sizes_since(self, before: dict[int, list[int]]) -> dict[int, list[int]]:
        out = {}
        for b, (f, k) in self.by_size.items():
            f0, k0 = before.get(b, (0, 0))
            if f - f0 or k - k0:
                out[b] = [f - f0, k - k0]
        return out

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
        calls = self.counter.by_size.setdefault(n, [0, 0])
        calls[0] += 1
        if out.requires_grad:
            counter = self.counter

            def _count_backward(grad: torch.Tensor) -> None:
                counter.backward_samples += n
                counter.backward_calls += 1
                calls[1] += 1

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
            call_model(model, x)  # through call_model: --model-timeout watches every call
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


class PassTimer:
    """Measured cost of one model call as a function of its batch size.

    Times forward and forward+backward passes at powers of two (and at the sizes seen at
    the ends), lazily, and interpolates linearly in between; ``ideal_s`` prices a
    histogram of calls (:meth:`PassCounter.sizes_since`). This is the denominator of the
    overhead ratio: what the counted passes would cost with nothing else around them.
    """

    def __init__(self, model: torch.nn.Module, sample: torch.Tensor, repeats: int = 3) -> None:
        self.model = model
        self.sample = sample
        self.repeats = repeats
        self._at: dict[int, tuple[float, float]] = {}  # size -> (forward s, backward-only s) per call

    def _measure(self, size: int) -> tuple[float, float]:
        if size not in self._at:
            reps = -(-size // len(self.sample))
            x = self.sample.repeat((reps,) + (1,) * (self.sample.dim() - 1))[:size]
            t = time_one_pass(self.model, x, self.repeats)
            fwd = t["forward_s_per_sample"] * size
            self._at[size] = (fwd, max(t["forward_backward_s_per_sample"] * size - fwd, 0.0))
        return self._at[size]

    def per_call(self, size: int) -> tuple[float, float]:
        lo = 1 << (max(size, 1).bit_length() - 1)
        if lo == size:
            return self._measure(size)
        hi = lo * 2
        (f0, b0), (f1, b1) = self._measure(lo), self._measure(hi)
        w = (size - lo) / (hi - lo)
        return f0 + w * (f1 - f0), b0 + w * (b1 - b0)

    def ideal_s(self, calls: dict[int, list[int]]) -> float:
        total = 0.0
        for size, (n_fwd, n_bwd) in calls.items():
            fwd, bwd = self.per_call(int(size))
            total += n_fwd * fwd + n_bwd * bwd
        return total


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)

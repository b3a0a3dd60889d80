"""Shared pieces of the built-in preprocessing defenses: typed parameters with defaults
and ranges, checked once so a bad ``--defense`` value is a one-line usage error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from auditor.errors import UsageError
from auditor.interfaces import Defense


@dataclass(frozen=True)
class Param:
    """One defense parameter: its type, default, inclusive range and meaning."""

    kind: type
    default: Any
    low: float | None = None
    high: float | None = None
    help: str = ""

    def coerce(self, defense: str, key: str, value: Any) -> Any:
        try:
            if self.kind is int:
                number = float(value)
                if number != int(number):
                    raise ValueError
                out: Any = int(number)
            else:
                out = self.kind(value)
        except (TypeError, ValueError):
            raise UsageError(f"--defense {defense}: {key}={value!r} is not {'an integer' if self.kind is int else 'a number'}") from None
        if isinstance(out, float) and out != out:  # NaN
            raise UsageError(f"--defense {defense}: {key} must be a number, not NaN")
        if (self.low is not None and out < self.low) or (self.high is not None and out > self.high):
            raise UsageError(f"--defense {defense}: {key}={value} is outside [{self.low:g}, {self.high:g}]")
        return out


class PreprocessingDefense(Defense):
    """A defense applied to the image before the model. Subclasses declare ``params`` and
    implement :meth:`make`, which receives the checked parameters."""

    family = "preprocessing"
    params: ClassVar[dict[str, Param]] = {}
    reference: ClassVar[str] = ""

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in, every value typed and inside its range."""
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            known = ", ".join(self.params) or "none"
            raise UsageError(f"--defense {self.name}: unknown parameter '{unknown[0]}' (known: {known})")
        out = {key: spec.default for key, spec in self.params.items()}
        for key, value in params.items():
            out[key] = self.params[key].coerce(self.name, key, value)
        return out

    def build(self, params: dict[str, Any]) -> torch.nn.Module:
        return self.make(self.resolve(params))

    def make(self, params: dict[str, Any]) -> torch.nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def vote_samples(self, params: dict[str, Any]) -> int:
        """Noisy copies the prediction takes a majority vote over (1: a single draw)."""
        return 1

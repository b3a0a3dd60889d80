"""Tiny TorchScript models, well-behaved and broken, for the bad-input corpus.

The probe in :func:`auditor.models.probe_model` runs a batch of 4 random images; the
"on data" models misbehave only on other batch sizes, so they pass the probe and fail
later, in the clean pass or in an attack, as a model with a data-dependent bug would.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

PROBE_BATCH = 4


class Tiny(nn.Module):
    """Conv -> ReLU -> global mean -> Linear: logits for any input size."""

    def __init__(self, channels: int = 3, classes: int = 2) -> None:
        super().__init__()
        with torch.random.fork_rng():  # seeded weights without touching the caller's RNG
            torch.manual_seed(0)
            self.conv = nn.Conv2d(channels, 4, 3, padding=1)
            self.head = nn.Linear(4, classes)
        with torch.no_grad():  # logits well away from [0, 1], so they never look like probabilities
            self.head.bias.copy_(torch.linspace(3.0, -3.0, classes))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


class NanAlways(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x) * float("nan")


class NanOnData(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits(x)
        if x.shape[0] != 4:
            out = out * float("nan")
        return out


class InfOnData(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits(x)
        if x.shape[0] != 4:
            out = out + float("inf")
        return out


class WrongShape(Tiny):
    """(N, K, 5) instead of (N, K)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).unsqueeze(2).repeat(1, 1, 5)


class FlatOutput(Tiny):
    """(N * K,): the batch and class dimensions flattened together."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).reshape(-1)


class WrongBatchOnData(Tiny):
    """One row of logits whatever the batch size, except for the probe's batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits(x)
        if x.shape[0] != 4:
            out = out[:1]
        return out


class RaisesOnData(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 4:
            raise RuntimeError("this model only handles batches of 4")
        return self.logits(x)


class RaisesInAttack(Tiny):
    """Fine for predictions and for the timing pass (a gradient pass on the first data batch,
    6 images in the corpus); fails on an attack's gradient pass over the clean-correct ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and x.shape[0] != 6:
            raise RuntimeError("gradients through this model are not supported")
        return self.logits(x)


class NoGradient(Tiny):
    """Logits computed from a detached input: nothing for a gradient attack to follow."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x.detach())


class Probabilities(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


class Marked(Tiny):
    """A working model whose unpickling writes ``canary``: a harmless, observable payload
    showing that loading the file ran code from it."""

    def __init__(self, canary: str = "") -> None:
        super().__init__()
        self.canary = canary

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        Path(self.canary).write_text("code from the model file ran")


def save(model: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
        torch.jit.save(torch.jit.script(model.eval()), str(path))
    return path


BROKEN = {
    "tiny": Tiny,
    "nan-always": NanAlways,
    "nan-on-data": NanOnData,
    "inf-on-data": InfOnData,
    "wrong-shape": WrongShape,
    "flat-output": FlatOutput,
    "wrong-batch-on-data": WrongBatchOnData,
    "raises-on-data": RaisesOnData,
    "raises-in-attack": RaisesInAttack,
    "no-gradient": NoGradient,
    "probabilities": Probabilities,
}


def write_all(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: save(cls(), folder / f"{name}.pt") for name, cls in BROKEN.items()}
    paths["tiny-1ch"] = save(Tiny(channels=1), folder / "tiny-1ch.pt")
    paths["tiny-3class"] = save(Tiny(classes=3), folder / "tiny-3class.pt")
    return paths

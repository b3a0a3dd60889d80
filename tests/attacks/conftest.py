"""A tiny seeded classifier and inputs for the attack tests, built once per session.

The model is a SmallCNN (width 8) trained for about a second on the demo's synthetic
lesions, so it classifies most inputs correctly with thin margins: the attacks have
something to break, and every backend (ART's per-sample ZOO included) stays fast.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch

from auditor.accounting import CountingModel, PassCounter
from auditor.architectures import SmallCNN
from auditor.demo import make_split, to_tensor
from auditor.steps import step_seed
from auditor.interfaces import Attack, AttackContext, AttackResult
from auditor.registry import get_registry
from auditor.training import train_classifier

SIZE = 32  # auditor.demo images are 32x32 RGB


def classification_attacks() -> list[Attack]:
    registry = get_registry()
    return [a for a in registry.attacks.values() if "classification" in a.tasks and a.public]


def attack_backends() -> list[tuple[str, str]]:
    """(attack name, backend) for every registered classification attack and backend."""
    return [(a.name, b) for a in classification_attacks() for b in a.backends]


@contextmanager
def one_thread():
    """Tiny models run fastest on one thread, and a busy machine (CI, other jobs) stalls
    OpenMP's thread barriers on every one of ART's thousands of batch-1 calls."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def tiny_model() -> torch.nn.Module:
    with one_thread():
        torch.manual_seed(0)
        model = SmallCNN(3, 2, width=8)
        x, y = make_split(60, seed=0)
        train_classifier(model, to_tensor(x), torch.from_numpy(y), epochs=6, batch_size=16, lr=3e-3, seed=0)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@pytest.fixture(scope="session")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """12 held-out images (6 per class) and their labels."""
    x, y = make_split(6, seed=1)
    return to_tensor(x), torch.from_numpy(y).long()


def make_context(model: torch.nn.Module, batch_size: int = 16, seed: int = 0) -> AttackContext:
    counter = PassCounter()
    return AttackContext(
        model=CountingModel(model, counter).eval(), device=torch.device("cpu"), num_classes=2,
        input_shape=(3, SIZE, SIZE), task="classification", seed=seed, batch_size=batch_size, counter=counter,
    )


def run_like_engine(attack: Attack, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float,
                    params: dict[str, Any], seed: int = 0) -> AttackResult:
    """Call ``Attack.run`` the way the engine does: a step seed in ``params`` and the global
    torch and numpy generators seeded with it."""
    params = dict(params)
    params["seed"] = step_seed(seed, attack.name, eps * 255, 0)
    torch.manual_seed(params["seed"])
    np.random.seed(params["seed"])
    return attack.run(ctx, x, y, eps, params)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())

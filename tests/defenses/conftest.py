"""Fixtures for the defense tests: a toy task with a robust and a non-robust signal (see
:mod:`tests.defenses.toy`), a model standard-trained on it in a few seconds, and its data
as a MedMNIST-style ``.npz`` and as class folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.defenses.toy import train_toy, write_folder, write_npz


@pytest.fixture(scope="session")
def toy_model() -> torch.nn.Module:
    return train_toy(seed=0)


@pytest.fixture(scope="session")
def toy_files(tmp_path_factory: pytest.TempPathFactory, toy_model: torch.nn.Module) -> dict[str, Path]:
    """TorchScript model, npz (train/val/test) and a class-folder test set."""
    root = tmp_path_factory.mktemp("toy")
    model_path = root / "toy.pt"
    torch.jit.script(toy_model.eval()).save(str(model_path))
    return {"model": model_path, "npz": write_npz(root / "toy.npz"), "folder": write_folder(root / "test")}


@pytest.fixture(scope="session")
def registry():
    from auditor.registry import get_registry

    return get_registry()

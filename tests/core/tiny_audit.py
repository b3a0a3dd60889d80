"""A tiny TorchScript classifier and class-folder data set for CLI tests that run
``medaudit`` as a separate process (stdout, signals, locks): a few seconds per run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parents[2]


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class PrintingNet(TinyNet):
    """Prints on every call: TorchScript compiles print() to prim::Print, which C++ writes
    to file descriptor 1 directly, past Python's sys.stdout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("model output follows")
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def save_model(path: Path, module: nn.Module | None = None) -> Path:
    torch.manual_seed(0)
    torch.jit.script((module or TinyNet()).eval()).save(str(path))
    return path


def make_data(folder: Path, per_class: int = 4, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for label, level in (("benign", 60), ("melanoma", 190)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(level, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{label}_{i}.png")
    return folder


def run_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(model), "--data", str(data), "--out", str(out), "--input-size", "16",
            "--attacks", "fgsm", "--eps", "2", "--budget", "quick", "--report-format", "none",
            "--skip-checks", *extra]


def medaudit_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "auditor.cli", *args]


def run_medaudit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``medaudit ARGS`` in a fresh interpreter, from this checkout, output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(medaudit_command(*args), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


# An --arch module whose network sleeps in every call: an audit that is still running
# when a test signals it. It classifies by brightness, so every image stays correct and
# every attack step has work to do.
SLOW_ARCH = '''
import time

import torch
from torch import nn


class SlowBrightness(nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        time.sleep(0.2)
        z = self.gain * (x.mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([-z, z], dim=1)


def build():
    return SlowBrightness()
'''


def save_slow_arch(folder: Path) -> tuple[Path, str]:
    """(state dict file, --arch spec); ``folder`` must be on PYTHONPATH of the run."""
    (folder / "medaudit_slow_arch.py").write_text(SLOW_ARCH)
    weights = folder / "slow.pth"
    torch.save({"gain": torch.tensor(20.0)}, weights)
    return weights, "medaudit_slow_arch:build"

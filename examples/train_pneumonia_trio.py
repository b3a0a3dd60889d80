"""Train three small, different PneumoniaMNIST classifiers for `medaudit transfer`.

The transferability matrix needs several models of the same input and classes; this makes
three in about a minute on 2 CPU cores from ../shared/data/medmnist/pneumoniamnist.npz
(28x28 grey, 2 classes): SmallCNN width 16 (seed 0), SmallCNN width 32 (seed 1) and a
two-hidden-layer MLP (seed 2), each 5 epochs of Adam (lr 2e-3, batch 64) on the train split.
TorchScript files land in OUT (default ~/.cache/medaudit/pneumonia-trio/):

    python examples/train_pneumonia_trio.py
    medaudit transfer ~/.cache/medaudit/pneumonia-trio/*.pt --data ../shared/data/medmnist/pneumoniamnist.npz \\
        --split test --limit 100 --modality chest-xray --eps 2,4,8 --budget quick
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from auditor.architectures import SmallCNN
from auditor.training import accuracy, train_classifier

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "medmnist" / "pneumoniamnist.npz"


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(),
                                 nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def split(arrays: np.lib.npyio.NpzFile, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(arrays[f"{name}_images"]).float().div(255)[:, None]
    return images, torch.from_numpy(arrays[f"{name}_labels"].reshape(-1)).long()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    arrays = np.load(DATA)
    x, y = split(arrays, "train")
    x_test, y_test = split(arrays, "test")
    out.mkdir(parents=True, exist_ok=True)
    builds = {"cnn16_s0": (lambda: SmallCNN(1, 2, width=16), 0), "cnn32_s1": (lambda: SmallCNN(1, 2, width=32), 1),
              "mlp_s2": (MLP, 2)}
    for name, (build, seed) in builds.items():
        started = time.perf_counter()
        torch.manual_seed(seed)
        model = build()
        train_classifier(model, x, y, epochs=5, batch_size=64, lr=2e-3, seed=seed)
        torch.jit.save(torch.jit.trace(model.eval(), x_test[:2]), str(out / f"pneu_{name}.pt"))
        print(f"pneu_{name}.pt: test accuracy {accuracy(model, x_test, y_test):.3f}, "
              f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".cache" / "medaudit" / "pneumonia-trio")

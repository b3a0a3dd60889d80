"""Models for the transfer tests: the demo's SmallCNN (``demo_inputs``) and two more tiny
SmallCNNs trained for a second or two each on other synthetic lesions (other seeds), saved
as TorchScript: three different models of the same two classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from auditor.architectures import SmallCNN
from auditor.demo import make_split, to_tensor
from auditor.training import train_classifier


@pytest.fixture(scope="session")
def other_models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("transfer-models")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    paths = []
    try:
        for seed in (1, 2):
            torch.manual_seed(seed)
            net = SmallCNN(3, 2, width=8)
            x, y = make_split(60, seed=10 + seed)
            train_classifier(net, to_tensor(x), torch.from_numpy(y), epochs=12, batch_size=16, lr=3e-3, seed=seed)
            path = folder / f"surrogate{seed}.pt"
            torch.jit.save(torch.jit.trace(net.eval(), to_tensor(x[:2])), str(path))
            paths.append(path)
    finally:
        torch.set_num_threads(threads)
    return paths

"""A real inference server for the query-only tests: KServe's Python ModelServer (see
``kserve_server.py``) serving a small CNN trained here on real pneumoniamnist X-rays,
started as a subprocess on a free port and stopped afterwards."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import require_shared_data

SERVER = Path(__file__).with_name("kserve_server.py")
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0  # KServe imports in ~5 s alone; the machine is shared


class XrayNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 7 * 7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) * 4.0  # centred inputs: one short training run then learns both classes
        return self.fc(torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 4).flatten(1))


def _train(images: np.ndarray, labels: np.ndarray, seed: int) -> nn.Module:
    """Two epochs, class-weighted (the training split is 74% pneumonia): about 80% test
    accuracy, and FGSM at 2/255 already breaks some images, so the attacks have work to do."""
    torch.manual_seed(seed)
    net = XrayNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    weight = torch.tensor([float((y == 1).sum()) / max(float((y == 0).sum()), 1.0), 1.0])
    for _ in range(2):
        for i in range(0, len(x), 32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i : i + 32]), y[i : i + 32], weight=weight).backward()
            opt.step()
    return net.eval()


@pytest.fixture(scope="session")
def xray_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """TorchScript CNNs trained for two epochs on 640 pneumoniamnist training images: ``main`` and
    ``alt`` (another seed: the model a vendor swaps in), plus the npz itself."""
    npz = require_shared_data("medmnist", "pneumoniamnist.npz")
    with np.load(npz) as data:
        labels = data["train_labels"].ravel()
        pick = np.random.default_rng(0).permutation(len(labels))[:640]  # the split is stored sorted by class
        images, labels = data["train_images"][pick], labels[pick]
    folder = tmp_path_factory.mktemp("served")
    paths = {"npz": npz}
    for name, seed in (("main", 0), ("alt", 1)):
        paths[name] = folder / f"{name}.pt"
        torch.jit.script(_train(images, labels, seed)).save(str(paths[name]))
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class V2Server:
    """One KServe ModelServer subprocess; ``counts()`` is what it says it answered."""

    def __init__(self, model: Path, workdir: Path, *extra: str, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.model, self.workdir, self.extra = model, workdir, extra
        self.port = port or free_port()
        self.counts_file = workdir / f"counts-{self.port}.json"
        self.env = env
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/models/classifier"

    def start(self) -> "V2Server":
        self.counts_file.unlink(missing_ok=True)
        cmd = [sys.executable, str(SERVER), "--model", str(self.model), "--port", str(self.port),
               "--shape", "1", "28", "28", "--classes", "2", "--counts", str(self.counts_file), *self.extra]
        log = (self.workdir / f"server-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT), **(self.env or {})})
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the KServe server exited: {(self.workdir / f'server-{self.port}.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/health/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("the KServe server did not become ready")

    def counts(self) -> dict[str, int]:
        return json.loads(self.counts_file.read_text()) if self.counts_file.exists() else {"requests": 0, "images": 0}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # as a crash would: no goodbye to the client
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture()
def v2_server(xray_models: dict[str, Path], tmp_path: Path):
    """Start-on-demand servers, all stopped at the end of the test."""
    pytest.importorskip("kserve", reason="the inference-server tests need: pip install kserve")
    started: list[V2Server] = []

    def start(*extra: str, model: Path | None = None, port: int | None = None,
              env: dict[str, str] | None = None) -> V2Server:
        server = V2Server(model or xray_models["main"], tmp_path, *extra, port=port, env=env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()

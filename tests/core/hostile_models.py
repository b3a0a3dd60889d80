"""Pickled modules (loaded with ``--trust-model``) that misbehave on purpose, for the
sandbox and ``--model-timeout`` tests. The CLI runs as a subprocess that imports this
module by name when it unpickles them."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import torch
from torch import nn

SIZE = 8  # tests.defenses.toy images: 8x8, one channel, two classes


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(SIZE * SIZE, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))


class WritesAndConnects(_Linear):
    """While it is unpickled (before any audit code touches it) it writes ``victim`` and
    opens a TCP connection to ``127.0.0.1:port``; a sandbox must stop both."""

    def __init__(self, victim: Path, port: int) -> None:
        super().__init__()
        self.victim, self.port = str(victim), port

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        try:
            Path(self.victim).write_text("written by the model file")
        except OSError:
            pass
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
        except OSError:
            pass


class HangsAfterFirstStep(_Linear):
    """Never returns from a call once ``results.json`` in ``out`` holds a finished attack
    step, when MEDAUDIT_TEST_HANG is set; behaves otherwise (the same file resumes)."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out = str(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if os.environ.get("MEDAUDIT_TEST_HANG") and self._a_step_is_done():
            while True:
                time.sleep(1)
        return super().forward(x)

    def _a_step_is_done(self) -> bool:
        try:
            return bool(json.loads((Path(self.out) / "results.json").read_text()).get("attacks"))
        except (OSError, ValueError):
            return False

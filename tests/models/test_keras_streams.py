"""Importing Keras through medaudit leaves no library handler holding a borrowed stream:
absl (imported by Keras) binds the sys.stderr of its first import and closes it at exit
when it is no longer the current one, which broke pytest's captured stream."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a fresh interpreter importing Keras: ~30 s on 2 busy cores

PROBE = '''
import io, sys
from plugins.models.keras_model import import_keras  # torch first: its own handlers are not Keras'
borrowed = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
real = sys.stderr
sys.stderr = borrowed  # as a test runner or an embedding application does
import_keras()
sys.stderr = real
import logging
held = [h.stream for h in logging._handlerList and [r() for r in logging._handlerList] if getattr(h, "stream", None) is borrowed]
print("borrowed streams held:", len(held))
borrowed.close()
'''


def test_keras_import_binds_library_handlers_to_the_process_streams():
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("absl") is None:
        pytest.skip("Keras 3 (with absl) is not installed")
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "borrowed streams held: 0" in done.stdout, done.stdout
    assert "I/O operation on closed file" not in done.stderr and "lost sys.stderr" not in done.stderr

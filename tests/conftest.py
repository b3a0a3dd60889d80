"""Fixtures shared by every test folder: the real-data location and a small trained
classifier with its test images (built once per session, seeded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests that start the real `medaudit` as a subprocess run it in-process, without paying for
# a second, sandboxed interpreter (tests/core/test_sandbox.py turns the sandbox back on).
os.environ.setdefault("MEDAUDIT_SANDBOX", "off")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require_shared_data(*parts: str) -> Path:
    """Path inside ../shared/data, or skip the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent")
    return path


@pytest.fixture(scope="session")
def demo_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(TorchScript model, class-folder data) of the demo: a SmallCNN trained for ~10 s on
    synthetic lesions, 20 test images per class."""
    from auditor.demo import build_demo

    workdir = tmp_path_factory.mktemp("demo")
    model_path, data_dir, _ = build_demo(workdir, seed=0, n_test_per_class=20)
    return model_path, data_dir

"""``--engine ray`` and untrusted models (issue 19): Ray's workers run outside the sandbox,
so the CLI asks for an explicit flag, and a model file that tries to run code when loaded
is refused on the driver and, through the same loaders, in a worker."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from auditor.cli import app
from auditor.config import AuditConfig
from auditor.sandbox import SWITCH_ENV, landlock_abi
from tests.models.files import CreatesFile

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def evil_model(tmp_path: Path) -> tuple[Path, Path]:
    """A torch.save'd pickle whose unpickling creates the canary file; (model, canary)."""
    canary = tmp_path / "canary-created-by-unpickling"
    buffer = io.BytesIO()
    torch.save(CreatesFile(canary), buffer)
    path = tmp_path / "evil.pt"
    path.write_bytes(buffer.getvalue())
    return path, canary


@pytest.mark.skipif(landlock_abi() < 1, reason="this kernel has no Landlock: nothing would be sandboxed anyway")
def test_ray_without_an_explicit_flag_is_refused_where_the_sandbox_would_run(demo_inputs, tmp_path: Path) -> None:
    model, data = demo_inputs
    env = {k: v for k, v in os.environ.items() if k != SWITCH_ENV}  # the sandbox at its default: on
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "auditor.cli", "run", str(model), "--data", str(data), "--out",
                             str(out), "--engine", "ray", "--workers", "1"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "outside the sandbox" in result.stderr and "--no-sandbox" in result.stderr
    assert not (out / "results.json").exists()


def test_a_malicious_pickle_is_refused_before_any_worker_starts(evil_model, demo_inputs, tmp_path: Path) -> None:
    model, canary = evil_model
    _, data = demo_inputs
    result = CliRunner().invoke(app, ["run", str(model), "--data", str(data), "--out", str(tmp_path / "out"),
                                      "--engine", "ray", "--workers", "1", "--no-sandbox", "--quiet"])
    assert result.exit_code == 3 and "--trust-model" in result.output, result.output
    assert not canary.exists()


@pytest.mark.slow
def test_a_ray_worker_refuses_a_malicious_pickle_as_the_local_loader_does(ray_address, evil_model, demo_inputs,
                                                                         tmp_path: Path) -> None:
    from auditor.engine.ray_engine import open_worker

    model, canary = evil_model
    _, data = demo_inputs
    config = AuditConfig(model=model, data=data, out=tmp_path / "out")
    with pytest.raises(ray.exceptions.RayTaskError, match="--trust-model"):
        ray.get(ray.remote(open_worker).options(max_retries=0).remote(config, 1))
    assert not canary.exists()

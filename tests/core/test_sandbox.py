"""The model sandbox (auditor.sandbox): the real ``medaudit`` command as a subprocess, with
the sandbox on, against a pickled model (``--trust-model``) that tries to write outside
``--out`` and to open a TCP connection while it is loaded."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from auditor.results import read_results, strip_volatile
from auditor.sandbox import SWITCH_ENV, landlock_abi
from tests.core.hostile_models import WritesAndConnects
from tests.defenses.toy import write_folder

ROOT = Path(__file__).resolve().parents[2]

needs_landlock = pytest.mark.skipif(landlock_abi() < 1, reason="this kernel has no Landlock")


def medaudit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m auditor.cli ARGS`` with the sandbox at its default (on)."""
    full_env = {k: v for k, v in os.environ.items() if k != SWITCH_ENV}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "auditor.cli", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)


def toy_run_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(model), "--data", str(data), "--out", str(out), "--channels", "1", "--input-size", "8",
            "--attacks", "fgsm,pgd", "--eps", "8,24", "--budget", "quick", "--report-format", "none",
            "--skip-checks", "--quiet", *extra]


@pytest.fixture()
def listener():
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


def got_connection(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@needs_landlock
@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandbox", "no-sandbox"])
def test_hostile_model_cannot_write_outside_out_or_connect(tmp_path, listener, sandboxed):
    victim = tmp_path / "victim"
    model = tmp_path / "hostile.pt"
    torch.save(WritesAndConnects(victim, listener.getsockname()[1]), model)
    data = write_folder(tmp_path / "data", n=16)
    extra = ["--trust-model", "--format", "pickle"] + ([] if sandboxed else ["--no-sandbox"])
    result = medaudit(*toy_run_args(model, data, tmp_path / "out", *extra))
    if sandboxed:
        assert not victim.exists(), result.stderr
        assert not got_connection(listener), result.stderr
        assert result.returncode == 0, result.stderr  # the audit itself is not disturbed
        assert read_results(tmp_path / "out")["environment"]["sandbox"]["mode"] in ("landlock+netns", "landlock")
    else:  # the same file, unconfined: proves the test can fail
        assert victim.read_text() == "written by the model file"
        assert got_connection(listener)
        assert read_results(tmp_path / "out")["environment"]["sandbox"]["mode"] == "none"


@needs_landlock
def test_harden_runs_the_model_in_the_sandbox_too(tmp_path, listener):
    victim = tmp_path / "victim"
    model = tmp_path / "hostile.pt"
    torch.save(WritesAndConnects(victim, listener.getsockname()[1]), model)
    data = write_folder(tmp_path / "data", n=16)
    result = medaudit("harden", str(model), "--data", str(data), "--out", str(tmp_path / "hardened" / "h.pt"),
                      "--trust-model", "--format", "pickle", "--epochs", "1", "--steps", "1", "--eval-steps", "1",
                      "--input-size", "8", "--channels", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "hardened" / "h.pt").is_file()  # its own output folder stays writable
    assert not victim.exists() and not got_connection(listener)


@needs_landlock
def test_sandbox_does_not_change_the_numbers(tmp_path):
    from tests.defenses.toy import train_toy

    model = tmp_path / "toy.pt"
    torch.jit.script(train_toy(epochs=5)).save(str(model))
    data = write_folder(tmp_path / "data", n=24)
    inside = medaudit(*toy_run_args(model, data, tmp_path / "inside"))
    outside = medaudit(*toy_run_args(model, data, tmp_path / "outside", "--no-sandbox"))
    assert inside.returncode == 0 and outside.returncode == 0, inside.stderr + outside.stderr
    a, b = read_results(tmp_path / "inside"), read_results(tmp_path / "outside")
    assert a["environment"]["sandbox"]["mode"] == "landlock+netns"
    assert b["environment"]["sandbox"] == {"mode": "none", "reason": "turned off (--no-sandbox)"}
    assert a.pop("command").replace("inside", "outside") + " --no-sandbox" == b.pop("command")
    assert a["attacks"] and strip_volatile(a) == strip_volatile(b)


CONFINE = """
import os, socket, sys
from auditor.sandbox import enter
state = enter([sys.argv[1]], sys.argv[2])
print(state["mode"])
open(os.path.join(sys.argv[1], "inside"), "w").write("ok")
open(os.path.join(sys.argv[2], "tmp"), "w").write("ok")
open(os.devnull, "w").write("ok")
for attempt in (lambda: open(sys.argv[3], "w"),
                lambda: os.rename(os.path.join(sys.argv[1], "inside"), sys.argv[3]),
                lambda: socket.create_connection(("127.0.0.1", int(sys.argv[4])), timeout=2)):
    try:
        attempt()
        print("allowed")
    except OSError:
        print("denied")
"""


@needs_landlock
def test_enter_confines_writes_and_tcp(tmp_path, listener):
    """The ctypes layer on its own, in a bare interpreter: writes beneath the allowed
    folders and /dev/null pass; a write, a rename out of them and a TCP connect fail."""
    allowed, tmp = tmp_path / "out", tmp_path / "tmp"
    allowed.mkdir(), tmp.mkdir()
    victim = tmp_path / "victim"
    result = subprocess.run([sys.executable, "-c", CONFINE, str(allowed), str(tmp), str(victim),
                             str(listener.getsockname()[1])], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["landlock+netns", "denied", "denied", "denied"]
    assert (allowed / "inside").read_text() == "ok" and not victim.exists()
    assert not got_connection(listener)


def test_sandbox_state_is_in_the_report():
    """The report's configuration table says how the model was confined, or that it was not."""
    from auditor.reporting.environment import render_html
    from tests.reporters.conftest import FIXTURES

    results = json.loads((FIXTURES / "results.json").read_text())
    for state, expected in (({"mode": "landlock+netns", "landlock_abi": 7}, "landlock+netns: no writes outside"),
                            ({"mode": "none", "reason": "turned off (--no-sandbox)"},
                             "none: the model's code ran unconfined (turned off (--no-sandbox))")):
        results["environment"]["sandbox"] = state
        assert expected in render_html(results)

"""Crash-safe, resumable audits.

``results.json`` is replaced atomically after every attack x eps step; after ``kill -9``
the same command with ``--resume`` finishes the audit with the numbers an uninterrupted
run gives, and refuses to resume when the model, the data or the configuration changed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from auditor.results import read_results, strip_volatile, write_results
from tests.reliability.corpus import CLASSES, Ctx, invoke, rgb
from tests.reliability.models import Tiny, save

REPO = Path(__file__).resolve().parents[2]
# Four attacks with randomness in them (PGD's start, ZOO's coordinates) at four eps on 20
# images: well over the time it takes to see the first step land, even on a fast machine.
KILL_ARGS = ["--input-size", "32", "--budget", "quick", "--attacks", "fgsm,pgd,cw,zoo", "--eps", "2,4,6,8",
             "--limit", "20", "--skip-checks", "--report-format", "none", "--quiet"]


def comparable(results: dict) -> dict:
    """Everything but timings, timestamps, the command line and the resume counter."""
    results = dict(results)
    for key in ("command", "resumed"):
        results.pop(key, None)
    return strip_volatile(results)


def command(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "auditor.cli", "run", str(model), "--data", str(data), "--out", str(out),
            *KILL_ARGS, *extra]


@pytest.mark.slow
def test_kill_9_mid_audit_then_resume_gives_the_uninterrupted_numbers(demo_inputs, tmp_path, record_property):
    model, data = demo_inputs

    t0 = time.monotonic()
    subprocess.run(command(model, data, tmp_path / "reference"), cwd=REPO, check=True, capture_output=True,
                   timeout=1800)
    uninterrupted_s = time.monotonic() - t0
    reference = read_results(tmp_path / "reference")
    n_steps = len(reference["attacks"])
    assert reference["status"] == "complete" and n_steps == 16

    out = tmp_path / "killed"
    results_path = out / "results.json"
    t0 = time.monotonic()
    proc = subprocess.Popen(command(model, data, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    reads = 0
    try:
        while True:  # every read of results.json while it is being rewritten must parse
            if proc.poll() is not None:
                pytest.fail(f"the audit ended (rc {proc.returncode}) before it could be killed: "
                            f"{proc.stderr.read().decode()[-500:]}")
            if results_path.exists():
                snapshot = json.loads(results_path.read_text())
                reads += 1
                if len(snapshot["attacks"]) >= 1:
                    break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        time_to_kill_s = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = json.loads(results_path.read_text())  # valid JSON after kill -9, never half-written
    done_before_kill = len(partial["attacks"])
    assert partial["status"] == "running" and 1 <= done_before_kill < n_steps

    t0 = time.monotonic()
    resumed_run = subprocess.run(command(model, data, out, "--resume"), cwd=REPO, capture_output=True, text=True,
                                 timeout=1800)
    resume_s = time.monotonic() - t0
    assert resumed_run.returncode == 0, resumed_run.stderr
    resumed = read_results(out)
    assert resumed["status"] == "complete" and resumed["resumed"] == 1
    # the steps finished before the kill were kept (their own timings), not recomputed
    kept = [(a["attack"], a["eps_255"], a["time_s"]) for a in resumed["attacks"][:done_before_kill]]
    assert kept == [(a["attack"], a["eps_255"], a["time_s"]) for a in partial["attacks"]]
    assert comparable(resumed) == comparable(reference)

    timings = {"uninterrupted_s": round(uninterrupted_s, 1), "time_to_kill_s": round(time_to_kill_s, 1),
               "steps_done_before_kill": done_before_kill, "of_steps": n_steps,
               "resume_s": round(resume_s, 1), "results_json_reads_while_running": reads}
    for key, value in timings.items():
        record_property(key, value)
    print(f"\nkill-and-resume timings: {timings}")


# ------------------------------------------------------------- partial results, in-process
def _drop_steps_after(results: dict, keep: int) -> dict:
    """results.json as it stood after the first ``keep`` attack steps of the same run."""
    partial = json.loads(json.dumps(results))
    kept = partial["attacks"][:keep]
    kept_keys = {(a["attack"], a["eps_255"]) for a in kept}
    partial.update(status="running", attacks=kept, summary=None, checks=None, clinical=None, targeted=None, gates=None,
                   gallery=[g for g in partial["gallery"] if (g["attack"], g["eps_255"]) in kept_keys])
    return partial


@pytest.mark.slow
def test_resume_after_any_step_gives_the_same_numbers(demo_inputs, tmp_path):
    """In-process complement to the kill test: resume points after the first, a middle and
    the last-but-one step, with a randomised attack (ZOO) after each of them."""
    model, data = demo_inputs
    args = ["run", str(model), "--data", str(data), "--input-size", "32", "--budget", "quick", "--attacks",
            "fgsm,pgd,zoo", "--eps", "2,8", "--limit", "8", "--skip-checks", "--report-format", "none", "--quiet"]
    reference_out = tmp_path / "reference"
    assert invoke([*args, "--out", str(reference_out)]).code == 0
    reference = read_results(reference_out)
    assert len(reference["attacks"]) == 6
    for keep in (1, 2, 5):
        out = tmp_path / f"from-{keep}"
        out.mkdir()
        write_results(out, _drop_steps_after(reference, keep))
        outcome = invoke([*args, "--out", str(out), "--resume"])
        assert outcome.code == 0, outcome.stderr
        assert comparable(read_results(out)) == comparable(reference), f"resumed after {keep} steps"


# ------------------------------------------------------------------------------ refusals
@pytest.fixture
def finished(tmp_path, tiny_models):
    """A finished tiny audit on BMP images (raw pixels: same dimensions, same file size)."""
    root = tmp_path / "data"
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rgb(10 * label + i)).save(root / name / f"img_{i}.bmp")
    model = tmp_path / "model.pt"
    shutil.copy(tiny_models["tiny"], model)
    ctx = Ctx(tmp_path, tiny_models)
    args = ctx.args(model, root, "--report-format", "none")
    assert invoke(args).code == 0
    return ctx, args, model, root


def _refused(args: list[str]) -> str:
    outcome = invoke([*args, "--resume"])
    assert outcome.code == 2, outcome.stderr
    assert len(outcome.stderr_lines) == 1 and "Traceback" not in outcome.stderr
    return outcome.stderr_lines[0]


def test_resume_with_nothing_changed_is_accepted(finished):
    ctx, args, _, _ = finished
    before = read_results(ctx.out)
    outcome = invoke([*args, "--resume"])
    assert outcome.code == 0, outcome.stderr
    assert comparable(read_results(ctx.out)) == comparable(before)


def test_resume_refused_when_the_configuration_changed(finished):
    ctx, args, _, _ = finished
    changed = list(args)
    changed[changed.index("--eps") + 1] = "2,4"
    message = _refused(changed)
    assert message.startswith(f"medaudit: error: cannot resume {ctx.out}: the model, data or configuration changed")
    assert "--out" in message
    seeded = [*args, "--seed", "1"]
    _refused(seeded)


def test_resume_refused_when_the_model_file_changed(finished):
    _, args, model, _ = finished
    retrained = Tiny()
    with torch.no_grad():
        retrained.head.bias.add_(0.5)
    save(retrained, model)
    assert "cannot resume" in _refused(args)


def test_resume_refused_when_an_image_changed_but_kept_its_size(finished):
    _, args, _, root = finished
    image = root / "melanoma" / "img_0.bmp"
    size = image.stat().st_size
    Image.fromarray(255 - rgb(10)).save(image)
    assert image.stat().st_size == size  # a size-based fingerprint would not notice
    assert "cannot resume" in _refused(args)


def test_resume_refused_when_an_image_was_added(finished):
    _, args, _, root = finished
    Image.fromarray(rgb(99)).save(root / "benign" / "extra.bmp")
    assert "cannot resume" in _refused(args)


def test_written_results_are_replaced_atomically(tmp_path, monkeypatch):
    """A failure while writing leaves the previous results.json intact and no temp file."""
    import auditor.results as results_module

    write_results(tmp_path, {"schema_version": "1.0", "status": "running", "attacks": [1]})

    def crash(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_module.os, "fsync", crash)
    with pytest.raises(Exception, match="No space left"):
        write_results(tmp_path, {"schema_version": "1.0", "status": "running", "attacks": [1, 2]})
    assert json.loads((tmp_path / "results.json").read_text())["attacks"] == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_written_files_get_the_umask_mode_not_0600(tmp_path):
    """Atomic writes go through mkstemp (0600); the results and reports must be readable as
    a plain open() would have made them, e.g. when published from a CI runner."""
    import os

    old = os.umask(0o022)
    try:
        write_results(tmp_path, {"schema_version": "1.0", "status": "running", "attacks": []})
        assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        write_results(tmp_path, {"schema_version": "1.0", "status": "running", "attacks": []})
        assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)

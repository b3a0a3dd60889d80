"""Out of GPU memory during an attack: the chunk is halved and retried, down to one sample;
one sample that does not fit is a clear error. Simulated on the CPU with an attack that
raises torch's CUDA out-of-memory error for batches above a size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auditor.steps import run_attack_fitting_memory
from auditor.errors import InputError
from auditor.hookspecs import hookimpl
from auditor.interfaces import AttackResult
from auditor.registry import load_registry
from auditor.results import read_results, strip_volatile
from plugins.attacks.fgsm import FGSM
from tests.reliability.corpus import invoke


def cuda_oom() -> Exception:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def old_style_oom() -> Exception:  # what torch < 1.13 and some extensions raise
    return RuntimeError("CUDA error: out of memory")


class LimitedFGSM(FGSM):
    """FGSM (per-sample deterministic) on a 'GPU' that holds at most ``max_batch`` images."""

    name = "limited-fgsm"
    title = "FGSM (memory-limited)"

    def __init__(self, max_batch: int, error=cuda_oom) -> None:
        self.max_batch = max_batch
        self.error = error
        self.calls: list[tuple[int, bool]] = []  # (batch size, fitted)

    def run(self, ctx, x, y, eps, params):
        fits = len(x) <= self.max_batch
        self.calls.append((len(x), fits))
        if not fits:
            raise self.error()
        return super().run(ctx, x, y, eps, params)


class Plugin:
    __name__ = "tests.reliability.test_oom"

    def __init__(self, attack) -> None:
        self.attack = attack

    @hookimpl
    def medaudit_register_attacks(self, register):
        register(self.attack)


def audit(monkeypatch, attack, demo_inputs, out, reports="none"):
    registry = load_registry(extra_plugins=[Plugin(attack)])
    monkeypatch.setattr("auditor.cli.run.get_registry", lambda: registry)
    model, data = demo_inputs
    return invoke(["run", str(model), "--data", str(data), "--out", str(out), "--input-size", "32", "--budget", "quick",
                   "--attacks", attack.name, "--eps", "2,8", "--limit", "16", "--batch-size", "8", "--skip-checks",
                   "--report-format", reports, "--quiet"])


def comparable(results):
    results = {k: v for k, v in results.items() if k not in ("command",)}
    for entry in results["attacks"]:
        entry.pop("passes")  # more, smaller calls when split; the samples pushed through are compared below
        entry["details"].pop("memory", None)  # how often it was split: asserted below
    return strip_volatile(results)


@pytest.mark.parametrize("error", [cuda_oom, old_style_oom], ids=["OutOfMemoryError", "RuntimeError"])
def test_out_of_memory_halves_the_batch_and_keeps_the_numbers(monkeypatch, demo_inputs, tmp_path, error):
    roomy = LimitedFGSM(max_batch=10_000)
    assert audit(monkeypatch, roomy, demo_inputs, tmp_path / "roomy").code == 0
    tight = LimitedFGSM(max_batch=3, error=error)
    outcome = audit(monkeypatch, tight, demo_inputs, tmp_path / "tight")
    assert outcome.code == 0, outcome.stderr

    reference, split = read_results(tmp_path / "roomy"), read_results(tmp_path / "tight")
    assert [a["passes"]["forward_samples"] for a in split["attacks"]] == [
        a["passes"]["forward_samples"] for a in reference["attacks"]]
    assert all(a["details"]["memory"]["oom_splits"] >= 1 for a in split["attacks"] if a["n_attacked"] > 3)
    assert not any("memory" in a["details"] for a in reference["attacks"])
    assert comparable(split) == comparable(reference)

    fitted = [n for n, ok in tight.calls if ok]
    refused = [n for n, ok in tight.calls if not ok]
    assert max(fitted) <= 3 and min(refused) > 3
    assert 8 in refused and 4 in refused  # a full chunk, then its halves
    assert sum(fitted) == sum(a["n_attacked"] for a in split["attacks"])
    assert sum(n for n, _ in roomy.calls) == sum(fitted)


def test_one_sample_that_does_not_fit_is_a_clear_error(monkeypatch, demo_inputs, tmp_path):
    attack = LimitedFGSM(max_batch=0)
    outcome = audit(monkeypatch, attack, demo_inputs, tmp_path / "out", reports="html")
    assert outcome.code == 3, outcome.stderr
    assert outcome.stderr_lines == [
        "medaudit: error: one sample (3x32x32) does not fit in GPU memory for attack 'limited-fgsm'; "
        "use a smaller --input-size or --device cpu"
    ]
    assert [n for n, _ in attack.calls][:4] == [8, 4, 2, 1]
    assert read_results(tmp_path / "out")["status"] == "running"
    assert not (tmp_path / "out" / "report.html").exists()


def test_other_errors_are_not_retried(monkeypatch, demo_inputs, tmp_path):
    attack = LimitedFGSM(max_batch=0, error=lambda: ValueError("a bug in the attack"))
    outcome = audit(monkeypatch, attack, demo_inputs, tmp_path / "out")
    assert outcome.code == 4
    assert outcome.stderr_lines == [
        "medaudit: error: internal error: ValueError: a bug in the attack (set MEDAUDIT_DEBUG=1 for a traceback)"]
    assert len(attack.calls) == 1


class Recording:
    """A fake attack: per-sample queries and details, OOM above ``max_batch``."""

    name = "recording"

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self.seeds: list[int] = []

    def run(self, ctx, x, y, eps, params):
        if len(x) > self.max_batch:
            raise cuda_oom()
        self.seeds.append(int(torch.initial_seed()))
        return AttackResult(x + 0.001, queries=np.full(len(x), 7.0),
                            details={"sub_attacks": {"apgd": len(x)}, "note": "ran"})


def test_split_results_are_put_back_together():
    x = torch.rand(5, 3, 4, 4)
    y = torch.zeros(5, dtype=torch.long)
    attack = Recording(max_batch=2)
    result = run_attack_fitting_memory(attack, None, x, y, 0.01, {"seed": 1234})
    torch.testing.assert_close(result.x_adv, x + 0.001)
    np.testing.assert_array_equal(result.queries, np.full(5, 7.0))
    assert result.details == {"sub_attacks": {"apgd": 5}, "note": "ran", "memory": {"oom_splits": 2}}  # 5 -> 3+2, 3 -> 2+1
    assert attack.seeds == [1234, 1234, 1234]  # every part starts from the chunk's seed: reproducible


def test_out_of_memory_elsewhere_says_what_to_lower(monkeypatch, tmp_path, tiny_models):
    """Outside an attack step (clean pass, checks) nothing is split: one clear line, exit 4."""
    from tests.reliability.corpus import Ctx

    def clean_pass(self):
        raise cuda_oom()

    monkeypatch.setattr("auditor.engine.classification.ClassificationAudit.clean_pass", clean_pass)
    ctx = Ctx(tmp_path, tiny_models)
    outcome = invoke(ctx.ok())
    assert outcome.code == 4
    assert outcome.stderr_lines == [
        "medaudit: error: out of GPU memory (CUDA out of memory. Tried to allocate 2.00 GiB); lower --batch-size "
        "or --input-size, or use --device cpu"]

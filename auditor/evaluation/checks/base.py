"""The validity checks' shared pieces: thresholds, the result record and the helpers every
check uses (subsample, chunks, seeded attacks through the one step routine)."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from auditor.evaluation.battery import step_outcomes
from auditor.registry import get_registry
from auditor.numerics import SampleStreams
from auditor.steps import attack_chunk, sample_seed, step_seed

REFERENCES = (
    "Carlini et al., On Evaluating Adversarial Robustness, arXiv:1902.06705 (2019)",
    "Croce & Hein, AutoAttack checks.py (ICML 2020)",
    "Athalye et al., Obfuscated Gradients Give a False Sense of Security, ICML 2018",
)
DEFAULT_SAMPLES = 48
GRADIENT_FAIL_FRACTION = 0.10  # check 2: more samples than this with zero/non-finite gradients fails
DETERMINISM_REPEATS = 3
DETERMINISM_RTOL = 1e-4  # check 3: logit differences below 1e-4 * max(1, |logit|) are float noise
LARGE_EPS_255 = 64.0
LARGE_EPS_STEPS = 20
LARGE_EPS_PASS, LARGE_EPS_FAIL = 0.05, 0.20  # check 7: robust accuracy at 64/255
CONVERGENCE_RESTARTS = 3
NOISE_DRAWS = 8
NOISE_RATIO = 0.5  # check 9: noise must break at most half as many samples as the attack
STATUSES = ("pass", "warn", "fail", "skipped")


def check_result(check_id: int, key: str, name: str, status: str, message: str,
                 numbers: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    assert status in STATUSES, status
    return {"id": check_id, "key": key, "name": name, "status": status, "message": message,
            "numbers": numbers or {}, **extra}


def gradient_verdict(name: str, n: int, zero: dict[str, int], nonfinite: int, numbers: dict[str, Any], *,
                     unit: str, masked_by: str, finds: str, warn_hint: str, passed: str) -> dict[str, Any]:
    """Check 2's rule for any task: fail on a NaN/Inf gradient or when more than
    GRADIENT_FAIL_FRACTION of the ``unit`` have a zero gradient for some loss, warn on any zero.
    ``zero`` counts zero gradients per loss label, in the order the message names them."""
    counts = ", ".join(f"{label} {k}" for label, k in zero.items())
    threshold = (f"fail when any gradient is NaN/Inf or more than {GRADIENT_FAIL_FRACTION:.0%} of {unit} have a "
                 "zero gradient; warn on any zero gradient")
    worst = max(zero.values())
    if nonfinite or worst > GRADIENT_FAIL_FRACTION * n:
        what = f"{nonfinite} NaN/Inf" if nonfinite else f"{worst} of {n} zero"
        return check_result(2, "gradients", name, "fail",
                            f"{what} input gradients ({counts}): gradients are masked ({masked_by}), so gradient "
                            f"attacks cannot find adversarial {finds} that exist", numbers, threshold=threshold)
    if worst:
        return check_result(2, "gradients", name, "warn",
                            f"{worst} of {n} {unit} have a zero input gradient ({counts}){warn_hint}", numbers,
                            threshold=threshold)
    return check_result(2, "gradients", name, "pass", passed, numbers, threshold=threshold)


def tolerance_samples(n: int, fraction: float, minimum: int) -> int:
    """The larger of ``minimum`` samples and ``fraction`` of ``n``: small subsamples are noisy."""
    return max(minimum, int(np.floor(fraction * n)))


def acc_of(fooled: np.ndarray) -> float | None:
    return float(1 - fooled.mean()) if fooled.size else None


def seeded_subset(candidates: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """Up to ``samples`` of ``candidates``, drawn with the audit's seed, sorted."""
    rng = np.random.default_rng(seed + 7919)
    take = min(len(candidates), max(int(samples), 0))
    return np.sort(rng.choice(candidates, size=take, replace=False)) if take else np.zeros(0, dtype=np.int64)


def check_subsample(correct: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """The seeded subsample the checks attack: clean-correct samples (the clinical targeted
    attacks ask for it too, to know whose PGD answers the checks will read)."""
    return seeded_subset(np.nonzero(correct)[0], samples, seed)


def summarise_checks(items: list[dict[str, Any]], cost: dict[str, Any] | None = None,
                     subsample: dict[str, Any] | None = None) -> dict[str, Any]:
    counts = {s: sum(1 for it in items if it["status"] == s) for s in STATUSES}
    verdict = "fail" if counts["fail"] else "warn" if counts["warn"] else "pass"
    return {"verdict": verdict, "summary": counts, "items": items, "subsample": subsample,
            "cost": cost, "references": list(REFERENCES)}


def skipped_checks(reason: str) -> dict[str, Any]:
    """``results["checks"]`` when the user turned the checks off."""
    out = summarise_checks([])
    out.update({"verdict": "skipped", "reason": reason})
    return out


class CheckBase:
    """What every check uses, on a finished :class:`auditor.engine.ClassificationAudit`.

    Uses from the audit: ``prep`` (config, params, eps grid, probe, registry), ``ctx`` (the
    counting model), ``counter``, ``labels``, ``correct``, ``clean_pred`` and ``_batch``."""

    def __init__(self, audit: Any, results: dict[str, Any], samples: int = DEFAULT_SAMPLES) -> None:
        self.audit = audit
        self.results = results
        self.prep = audit.prep
        self.config = audit.prep.config
        self.ctx = audit.ctx
        self.model = audit.ctx.model
        self.registry = getattr(self.prep, "registry", None) or get_registry()
        self.sub = self.subsample(samples)
        self.eps_255 = list(self.prep.eps_255)
        self.eps_max = max(self.eps_255)
        self._fooled: dict[tuple[str, float], np.ndarray] = {}
        self._outcomes: dict[tuple[str, float], dict[str, np.ndarray]] | None = None
        # sample x eps answers the checks took from the audit's own runs, and the ones they ran
        self.reuse = {"from_battery": 0, "from_targeted": 0, "attacked_here": 0}

    def subsample(self, samples: int) -> np.ndarray:
        return check_subsample(self.audit.correct, samples, self.config.seed)

    def run_items(self, checks: list[tuple[int, str, Callable[[], dict[str, Any]]]], progress: Any,
                  subsample: dict[str, Any]) -> dict[str, Any]:
        """Each check timed and costed (a check that breaks is skipped, not fatal), then the verdict."""
        before = self.audit.counter.snapshot()
        t0 = time.perf_counter()
        items = []
        stop = getattr(self.audit, "stop", None)  # auditor.stopping.StopRules: --max-time
        for check_id, key, check in checks:
            if stop is not None and stop.check(f"validity check {check_id} ({key})"):
                items.append(check_result(check_id, key, key, "skipped", f"not run: {stop.reason}"))
            else:
                items.append(self._timed(check_id, key, check))
            if progress is not None:
                progress.advance(1)
        passes = self.audit.counter.since(before)
        return summarise_checks(items, {
            "time_s": time.perf_counter() - t0, "forward_samples": passes["forward_samples"],
            "backward_samples": passes["backward_samples"],
        }, subsample=subsample)

    # -------------------------------------------------------------- helpers
    def _data(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = self.audit._batch(indices)
        return x, y

    def _chunks(self, indices: np.ndarray) -> list[np.ndarray]:
        bs = max(int(self.config.batch_size), 1)
        return [indices[i : i + bs] for i in range(0, len(indices), bs)]

    def _seed(self, tag: str, eps_255: float) -> int:
        return step_seed(self.config.seed, f"check:{tag}", eps_255)

    def _streams(self, tag: str, eps_255: float, chunk: np.ndarray, device: torch.device) -> SampleStreams:
        """One random stream per sample of ``chunk`` (its draws never depend on the chunk)."""
        seed = self._seed(tag, eps_255)
        return SampleStreams.of(seed, len(chunk), device, [sample_seed(seed, int(s)) for s in chunk])

    def attack_params(self, name: str) -> dict[str, Any]:
        """The audit's parameters for ``name`` when it was in the battery, else its own for the budget."""
        if name in self.prep.params:
            return dict(self.prep.params[name])
        attack = self.registry.get("attacks", name)
        return {**attack.parameters(self.config.budget, self.ctx), "backend": attack.default_backend}

    def run_attack(self, name: str, eps_255: float, params: dict[str, Any] | None = None,
                   tag: str | None = None, indices: np.ndarray | None = None) -> np.ndarray:
        """Which samples of ``indices`` (default: the subsample) the attack fools, with the
        engine's rules: seeded per chunk, result projected onto the eps ball and [0, 1]."""
        cacheable = params is None and indices is None
        indices = self.sub if indices is None else indices
        key = (tag or name, float(eps_255))
        if cacheable and key in self._fooled:
            return self._fooled[key]
        attack = self.registry.get("attacks", name)
        params = dict(params or self.attack_params(name))
        eps = eps_255 / 255.0
        # what the audit already ran answers for some samples; only the rest are attacked here
        known, fooled = self._reused(name, eps_255) if cacheable else (np.zeros(len(indices), dtype=bool),) * 2
        todo = indices[~known]
        rest = np.zeros(len(todo), dtype=bool)
        offset = 0
        for chunk in self._chunks(todo):
            x, y = self._data(chunk)
            _, x_adv, _, _ = attack_chunk(attack, self.ctx, x, y, eps, params, self._seed(tag or name, eps_255), chunk)
            with torch.no_grad():
                rest[offset : offset + len(chunk)] = (self.model(x_adv).argmax(1) != y).cpu().numpy()
            offset += len(chunk)
        fooled = fooled.copy()
        fooled[~known] = rest
        self.reuse["attacked_here"] += int(len(todo))
        if cacheable:
            self._fooled[key] = fooled
        return fooled

    def _reused(self, name: str, eps_255: float) -> tuple[np.ndarray, np.ndarray]:
        """(known, fooled) over the subsample from what the audit already ran with the same
        parameters (``auditor.evaluation.battery``): the battery's own step for ``name`` at
        this eps, and for PGD on two-class models the clinical targeted trajectories."""
        known = np.zeros(len(self.sub), dtype=bool)
        fooled = np.zeros(len(self.sub), dtype=bool)
        if self._outcomes is None:
            self._outcomes = step_outcomes(self.results, np.asarray(self.audit.correct, dtype=bool))
        outcome = self._outcomes.get((name, float(eps_255))) if name in self.prep.params else None
        if outcome is not None:
            known = outcome["attacked"][self.sub]
            fooled = outcome["broken"][self.sub] & known
            self.reuse["from_battery"] += int(known.sum())
        shared = getattr(self.audit, "shared_trajectories", None)
        if name == "pgd" and shared is not None and shared.stands_in_for(self.attack_params("pgd")):
            covered, hit = shared.pgd_fooled(eps_255, self.sub)
            new = covered & ~known
            fooled[new] = hit[new]
            known = known | covered
            self.reuse["from_targeted"] += int(new.sum())
        return known, fooled

    def _audit_broken(self, eps_255: float) -> list[int]:
        """Samples any audit attack broke at any eps <= ``eps_255`` (the worst case's rule)."""
        broken: set[int] = set()
        for entry in self.results["attacks"]:
            if entry["eps_255"] <= eps_255:
                broken.update(entry["samples"]["broken"])
        return sorted(broken)

    def _timed(self, check_id: int, key: str, func: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        before = self.audit.counter.snapshot()
        t0 = time.perf_counter()
        try:
            result = func()
        except Exception as exc:  # noqa: BLE001 - a check that breaks must not sink the audit
            first = (str(exc).splitlines() or [""])[0]
            result = check_result(check_id, key, key, "skipped", f"could not run: {type(exc).__name__}: {first}")
        passes = self.audit.counter.since(before)
        result["cost"] = {"time_s": time.perf_counter() - t0, "forward_samples": passes["forward_samples"],
                          "backward_samples": passes["backward_samples"]}
        return result

    def _skip_if_empty(self, check_id: int, key: str, name: str) -> dict[str, Any] | None:
        if len(self.sub):
            return None
        return check_result(check_id, key, name, "skipped", "no clean-correct samples to attack")

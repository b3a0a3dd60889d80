"""The audit loop every task shares.

One schedule (eps ascending, attacks cheap to expensive), one resume rule, one write of
``results.json`` after every step (atomic, so a crash loses at most the step in flight).
A task specialises the hooks: what the clean pass records, how one attack x eps step runs,
what a finished step changes (the classification cascade), the worst case, and what runs
after the last step (checks, clinical metrics, gates). In the manner of MONAI's
``Workflow`` and its trainer/evaluator specialisations.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditor.accounting import CountingModel, PassCounter
from auditor.config import config_hash
from auditor.costs import passes_per_image
from auditor.engine.cache import SampleCache
from auditor.engine.prepare import Prepared
from auditor.engine.record import plugin_provenance, resume_state, time_breakdown
from auditor.engine.service import end_identity, query_rules, refresh, start_identity
from auditor.errors import InputError
from auditor.interfaces import AttackContext
from auditor.progress import Progress
from auditor.results import write_results
from auditor.stopping import StopRule, StopRules, TimeLimit


CLEAN_PASS_UNITS = 1 / 3  # a forward pass costs about a third of a forward + backward


def attack_units(attack: Any, params: dict[str, Any]) -> float:
    """Forward + backward passes per image an attack plans (auditor.costs, the model --plan
    uses too): gradient steps, plus queries as forward passes."""
    passes = passes_per_image(attack, params)
    return passes["forward_backward"] + passes["forward"] * CLEAN_PASS_UNITS


class AuditSkeleton(ABC):
    """Runs one prepared audit; subclasses fill in the task's hooks."""

    def __init__(self, prep: Prepared, progress: Progress | None, command: str | None, module: torch.nn.Module,
                 batch_size: int) -> None:
        self.prep = prep
        self.config = prep.config
        self.progress = progress or Progress()
        self.command = command or " ".join(shlex.quote(a) for a in sys.argv)
        self.counter = PassCounter()
        self.model = CountingModel(module, self.counter).eval()
        self.cache = SampleCache(prep.dataset)
        self.batch_size = batch_size
        self.ctx = AttackContext(
            model=self.model, device=prep.device, num_classes=prep.num_classes,
            input_shape=prep.input_shape, task=prep.task, seed=self.config.seed,
            batch_size=batch_size, counter=self.counter,
        )
        self.ctx.extra.update(prep.attack_extra)  # e.g. the --surrogate model transfer attacks craft on
        self.n = len(prep.dataset)
        self.gallery: list[dict[str, Any]] = []
        self.stop = StopRules(self.stop_rules())  # consulted at every step boundary (auditor.stopping)

    def _chunks(self, indices: np.ndarray) -> list[np.ndarray]:
        bs = self.batch_size
        return [indices[i : i + bs] for i in range(0, len(indices), bs)]

    # ------------------------------------------------------------------- hooks
    def before(self) -> None:
        """Fail fast on anything the configuration gets wrong, before the clean pass."""

    @abstractmethod
    def base_results(self, cfg_hash: str) -> dict[str, Any]:
        """The task's results.json before the clean pass (header, config, empty blocks)."""

    @abstractmethod
    def begin(self, results: dict[str, Any]) -> None:
        """The clean pass and whatever the steps need from it, into ``results``."""

    def start_eps(self, eps_255: float) -> None:
        """Called before the first step at ``eps_255``."""

    @abstractmethod
    def step(self, attack: Any, eps_255: float) -> dict[str, Any]:
        """One attack at one eps: the results entry."""

    def record(self, entry: dict[str, Any]) -> None:
        """A finished (or resumed) step's entry, before it is written."""

    def end_eps(self, eps_255: float) -> None:
        """Called after the last step at ``eps_255``."""

    @abstractmethod
    def worst_case(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per eps, the worst case per sample over every entry at that eps or a smaller one."""

    @abstractmethod
    def finish(self, results: dict[str, Any]) -> None:
        """Everything after the last step, down to ``status: complete`` and its write."""

    # ---------------------------------------------------------------- stopping
    finish_label = "after the steps: validity checks, summary, acceptance gates"

    def stop_rules(self) -> list[StopRule]:
        """The rules that may end this audit early (``--max-time``; add a query budget here)."""
        seconds = getattr(self.config, "max_time", None)
        return ([TimeLimit(seconds)] if seconds else []) + query_rules(self.prep)

    def mark_incomplete(self, results: dict[str, Any]) -> None:
        """A stopped audit: ``status: incomplete``, what did not run and why; the worst case
        only at the eps whose every step ran (at another it would overstate robustness)."""
        ran = {(e["attack"], float(e["eps_255"])) for e in results.get("attacks") or []}
        whole = [e for e in self.prep.eps_255 if all((a.name, float(e)) in ran for a in self.prep.attacks)]
        results["worst_case"] = [w for w in results.get("worst_case") or [] if w.get("eps_255") in whole]
        results["incomplete"] = {**self.stop.block(), "eps_255_complete": whole}
        results["status"] = "incomplete"

    # ------------------------------------------------------------ planned work
    def step_units(self, attack: Any) -> float:
        """A step's planned work, for the whole-audit ETA: images x passes per image."""
        return self.n * attack_units(attack, (getattr(self.prep, "params", None) or {}).get(attack.name) or {})

    def finish_units(self) -> float:
        """Planned work after the last step (checks, clinical attacks); 0 when unknown."""
        return 0.0

    def planned_units(self) -> float:
        steps = sum(self.step_units(a) for a in self.prep.attacks) * len(self.prep.eps_255)
        return self.n * CLEAN_PASS_UNITS + steps + self.finish_units()

    def _planned_run(self, results: dict[str, Any], done: dict[Any, dict[str, Any]], out: Path) -> None:
        t0 = time.perf_counter()
        with self.progress.share(self.n * CLEAN_PASS_UNITS):
            self.begin(results)
        self.clean_s = time.perf_counter() - t0
        write_results(out, results)
        entries: list[dict[str, Any]] = []
        for eps_255 in self.prep.eps_255:
            self.start_eps(eps_255)
            for attack in self.prep.attacks:
                key = (attack.name, float(eps_255))
                if key not in done and self.stop.check(f"{attack.name} at {eps_255:g}/255"):
                    continue  # the steps left are listed in results.json's incomplete block
                with self.progress.share(self.step_units(attack)):  # a resumed step is spent at once
                    entry = done[key] if key in done else self.step(attack, eps_255)
                self.record(entry)
                entries.append(entry)
                results["attacks"] = entries
                results["worst_case"] = self.worst_case(entries)
                results["gallery"] = self.gallery
                results["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                refresh(self.prep, results)  # a query-only target's traffic so far
                write_results(out, results)
            self.end_eps(eps_255)
        if self.stop.check(self.finish_label):
            return
        with self.progress.share(self.finish_units()):
            self.finish(results)

    # --------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        prep, config = self.prep, self.config
        out = Path(config.out)
        cfg_hash = config_hash(config.identity(), prep.model.sha256, prep.dataset.fingerprint())
        started = time.perf_counter()
        self.stop.start()
        self.before()
        results = self.base_results(cfg_hash)
        done, self.gallery = resume_state(config.resume, out, cfg_hash, results, self.progress)
        start_identity(prep, results)  # a query-only target: fingerprinted, and compared on --resume
        with self.progress.plan("whole audit", self.planned_units()):
            self._planned_run(results, done, out)
        if self.stop.stopped:
            self.mark_incomplete(results)
        end_identity(prep, results)  # a query-only target that changed under the audit fails it
        provenance = plugin_provenance(prep)
        if provenance and provenance != results.get("provenance", {}).get("plugins"):
            results.setdefault("provenance", {})["plugins"] = provenance  # the checks and clinical attacks used more
        # after the last write of the finish hook, so the wall time covers it
        wall_s = time.perf_counter() - started
        results.setdefault("timing", {}).update(time_breakdown(results, wall_s, self.clean_s, set(done)))
        write_results(out, results)
        if results.get("status") == "failed":
            raise InputError(f"{results['failure']}; results.json records both fingerprints, its numbers mix two models")
        return results

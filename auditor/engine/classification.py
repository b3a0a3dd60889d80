"""The classification audit: clean pass, attack steps in the cascade (or independently),
worst case per sample, then the validity checks, the clinical targeted attacks and metrics,
a --defense's evidence, the detector and the acceptance gates.

Modes:

* ``cascade`` (default): a sample is attacked only while it is still robust. One broken at
  eps k counts as broken at every larger eps (its perturbation lies inside the larger
  ball), and one broken by a cheap attack is not handed to an expensive one. Each attack
  entry's ``robust_accuracy`` is then *cumulative*: the worst case over this attack and
  the ones before it at this eps.
* ``independent``: every attack at every eps on every clean-correct sample; each entry's
  ``robust_accuracy`` is that attack's own (the survey's per-attack table).

In both modes ``worst_case`` per eps counts a sample as broken when any attack at any
eps <= this eps broke it. Misclassified clean samples are never attacked: they count as
not robust.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditor.accounting import PassTimer, time_one_pass
from auditor.engine.prepare import Prepared
from auditor.engine.corruption import CorruptionRun, corruption_units
from auditor.engine.record import environment, overhead_block, results_header
from auditor.engine.service import target_of
from auditor.engine.skeleton import AuditSkeleton
from auditor.steps import attack_chunk, merge_details, query_block, step_seed
from auditor.engine.summary import summarise
from auditor.errors import InputError
from auditor.evaluation.checks import run_checks, skipped_checks
from auditor.evaluation.checks.base import CONVERGENCE_RESTARTS, LARGE_EPS_STEPS, NOISE_DRAWS
from auditor.evaluation.clinical import clinical_metrics, resolve_positive_class, run_targeted
from auditor.evaluation.defense_audit import defense_results
from auditor.evaluation.defenses import attack_surface
from auditor.evaluation.detection import detection_for_audit
from auditor.evaluation.saliency import saliency_for_audit
from auditor.evaluation.universal import uap_for_audit
from auditor.gates import evaluate_gates, parse_criteria, validate_criteria, write_junit
from auditor.imagery import png_base64
from auditor.models import call_model
from auditor.progress import Progress
from auditor.results import write_results
from auditor.stats import proportion_ci

GALLERY_PER_CLASS = 2


class ClassificationAudit(AuditSkeleton):
    """Runs one prepared classification audit, writing results.json after every step."""

    def __init__(self, prep: Prepared, progress: Progress | None = None, command: str | None = None) -> None:
        # the attacks see the model through the defense, when there is one
        super().__init__(prep, progress, command, attack_surface(prep), prep.config.batch_size)
        self.labels = np.asarray(prep.dataset.targets(), dtype=np.int64)

    # ------------------------------------------------------------------ helpers
    def _batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        batch = self.cache.load(indices)
        return batch.images.to(self.prep.device), batch.targets.to(self.prep.device), batch.ids

    @torch.no_grad()
    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        logits = call_model(self.prep.model.module, x)
        if logits.dim() != 2 or logits.shape[1] != self.prep.num_classes:
            raise InputError(
                f"the model returned shape {tuple(logits.shape)} for a batch of {len(x)}; expected "
                f"({len(x)}, {self.prep.num_classes}) logits, as it gave on the probe batch"
            )
        if not torch.isfinite(logits).all():
            raise InputError("the model returned NaN or Inf logits; check the model and its input range")
        return logits

    # --------------------------------------------------------------- clean pass
    def clean_pass(self) -> dict[str, Any]:
        preds = np.zeros(self.n, dtype=np.int64)
        conf = np.zeros(self.n, dtype=np.float64)
        probs = np.zeros((self.n, self.prep.num_classes), dtype=np.float64)
        ids: list[str] = []
        order = np.arange(self.n)
        with self.progress.task("clean pass", self.n) as task:
            for chunk in self._chunks(order):
                x, y, batch_ids = self._batch(chunk)
                p = torch.softmax(self._predict(x).double(), dim=1).cpu().numpy()
                probs[chunk] = p
                preds[chunk] = p.argmax(1)
                conf[chunk] = p.max(1)
                ids.extend(batch_ids)
                task.advance(len(chunk))
        self.ids = ids
        self.clean_pred = preds
        self.clean_conf = conf
        self.clean_probs = probs
        self.correct = preds == self.labels
        return self._accuracy_block(self.correct, preds)

    def _accuracy_block(self, robust: np.ndarray, preds: np.ndarray) -> dict[str, Any]:
        k = int(robust.sum())
        low, high = proportion_ci(k, self.n)
        per_class = {}
        for c, name in enumerate(self.prep.class_names):
            mask = self.labels == c
            if mask.any():
                kc, nc = int(robust[mask].sum()), int(mask.sum())
                lo, hi = proportion_ci(kc, nc)
                per_class[name] = {"accuracy": kc / nc, "n": nc, "ci95": [lo, hi], "ci_method": "wilson"}
        confusion = np.zeros((self.prep.num_classes, self.prep.num_classes), dtype=np.int64)
        np.add.at(confusion, (self.labels, preds), 1)
        return {
            "accuracy": k / self.n, "n": self.n, "n_correct": k, "ci95": [low, high],
            "ci_method": "wilson", "per_class": per_class, "confusion": confusion.tolist(),
        }

    # ------------------------------------------------------------ attack steps
    def run_step(self, attack: Any, eps_255: float, candidates: np.ndarray) -> dict[str, Any]:
        eps = eps_255 / 255.0
        params = dict(self.prep.params[attack.name])
        broken_idx: list[int] = []
        adv_pred: list[int] = []
        adv_conf: list[float] = []
        linf: list[float] = []
        l2: list[float] = []
        queries: list[float] = []
        projected = 0
        details: dict[str, Any] = {}
        before = self.counter.snapshot()
        before_sizes = self.counter.sizes()
        verify_calls: dict[int, list[int]] = {}  # the engine's own check of each result: forward passes
        attack_time = 0.0
        t0 = time.perf_counter()
        with self.progress.task(f"{attack.name} eps={eps_255:g}/255", len(candidates)) as task:
            for chunk in self._chunks(candidates):
                x, y, _ = self._batch(chunk)
                seed = step_seed(self.config.seed, attack.name, eps_255)
                result, x_adv, outside, seconds = attack_chunk(attack, self.ctx, x, y, eps, params, seed, chunk)
                attack_time += seconds
                projected += len(chunk) if outside else 0
                delta = x_adv - x
                p = torch.softmax(self._predict(x_adv).double(), dim=1)
                verify_calls.setdefault(len(chunk), [0, 0])[0] += 1
                pred = p.argmax(1)
                fooled = (pred != y).cpu().numpy()
                flat = delta.flatten(1)
                for j in np.nonzero(fooled)[0]:
                    broken_idx.append(int(chunk[j]))
                    adv_pred.append(int(pred[j]))
                    adv_conf.append(float(p[j, pred[j]]))
                    linf.append(float(flat[j].abs().max()))
                    l2.append(float(flat[j].norm()))
                    self._maybe_gallery(attack.name, eps_255, int(chunk[j]), x[j], x_adv[j], int(pred[j]), float(p[j, pred[j]]))
                if result.queries is not None:
                    queries.extend(float(q) for q in np.asarray(result.queries).ravel())
                merge_details(details, result.details)
                task.advance(len(chunk))
        elapsed = time.perf_counter() - t0
        passes = self.counter.since(before)
        n_attacked = int(len(candidates))
        entry: dict[str, Any] = {
            "attack": attack.name,
            "title": attack.title,
            "threat_model": attack.threat_model,
            "backend": params["backend"],
            "eps": eps,
            "eps_255": eps_255,
            "n": self.n,
            "n_attacked": n_attacked,
            "n_broken": len(broken_idx),
            "success_rate": (len(broken_idx) / n_attacked) if n_attacked else None,
            "perturbation": {
                "linf_mean": float(np.mean(linf)) if linf else None,
                "linf_max": float(np.max(linf)) if linf else None,
                "l2_mean": float(np.mean(l2)) if l2 else None,
                "l2_max": float(np.max(l2)) if l2 else None,
            },
            "projected_by_engine": projected,
            "params": {k: v for k, v in params.items() if k != "seed"},
            "seed": self.config.seed,
            "passes": passes,
            "time_s": elapsed,
            "attack_time_s": attack_time,
            "details": details,
            "samples": {"broken": broken_idx, "adv_pred": adv_pred, "adv_confidence": adv_conf},
        }
        if attack.threat_model == "black-box":
            entry["queries"] = query_block(queries, passes["forward_samples"], n_attacked)
        self.step_extras = {"linf": linf, "l2": l2, "queries": queries}  # per sample, for a sharded run's merge
        entry["overhead"] = overhead_block(getattr(self, "pass_timer", None), attack_time, elapsed,
                                           self.counter.sizes_since(before_sizes), verify_calls)
        return entry

    def _maybe_gallery(self, attack: str, eps_255: float, index: int, x: torch.Tensor, x_adv: torch.Tensor,
                       pred: int, conf: float) -> None:
        label = int(self.labels[index])
        per_class = [g for g in self.gallery if g["label"] == label]
        if len(per_class) >= GALLERY_PER_CLASS or any(g["index"] == index for g in self.gallery):
            return
        delta = x_adv - x
        scale = float(delta.abs().max()) or 1.0
        self.gallery.append({
            "index": index, "id": self.ids[index], "label": label,
            "label_name": self.prep.class_names[label], "attack": attack, "eps_255": eps_255,
            "clean_pred": int(self.clean_pred[index]), "clean_pred_name": self.prep.class_names[int(self.clean_pred[index])],
            "clean_confidence": float(self.clean_conf[index]),
            "adv_pred": pred, "adv_pred_name": self.prep.class_names[pred], "adv_confidence": conf,
            "perturbation_scale": scale,
            "clean_png": png_base64(x), "adv_png": png_base64(x_adv),
            "perturbation_png": png_base64(0.5 + 0.5 * delta / scale),
        })

    # ----------------------------------------------------------------- worst case
    def worst_case(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for eps_255 in self.prep.eps_255:
            robust = self.correct.copy()
            preds = self.clean_pred.copy()
            broken_by: dict[str, int] = {}
            relevant = sorted((e for e in entries if e["eps_255"] <= eps_255), key=lambda e: -e["eps_255"])
            seen = np.zeros(self.n, dtype=bool)
            for e in relevant:
                s = e["samples"]
                for i, p in zip(s["broken"], s["adv_pred"]):
                    if not seen[i]:
                        seen[i] = True
                        robust[i] = False
                        preds[i] = p
                        broken_by[e["attack"]] = broken_by.get(e["attack"], 0) + 1
            block = self._accuracy_block(robust, preds)
            flips = []
            clean_conf = np.zeros((self.prep.num_classes,) * 2, dtype=np.int64)
            np.add.at(clean_conf, (self.labels[self.correct], preds[self.correct]), 1)
            for a in range(self.prep.num_classes):
                for b in range(self.prep.num_classes):
                    if a != b and clean_conf[a, b]:
                        flips.append({"from": self.prep.class_names[a], "to": self.prep.class_names[b],
                                      "count": int(clean_conf[a, b])})
            out.append({
                "eps": eps_255 / 255.0, "eps_255": eps_255,
                "robust_accuracy": block["accuracy"], "n_robust": block["n_correct"], "n": self.n,
                "ci95": block["ci95"], "ci_method": "wilson", "per_class": block["per_class"],
                "confusion": block["confusion"], "flips": flips, "broken_by": broken_by,
            })
        return out

    # --------------------------------------------------------------------- run
    def base_results(self, cfg_hash: str) -> dict[str, Any]:
        prep = self.prep
        results = results_header(prep, self.command, cfg_hash, self.n)
        results["data"]["per_class_counts"] = {name: int((self.labels == c).sum())
                                               for c, name in enumerate(prep.class_names)}
        return {
            **results,
            "config": {
                "modality": prep.modality.name, "task": prep.task, "mode": prep.config.mode,
                "eps_255": prep.eps_255, "eps": [e / 255.0 for e in prep.eps_255],
                "attacks": [{"name": a.name, "title": a.title, "threat_model": a.threat_model,
                             "reference": a.reference, "params": prep.params[a.name]} for a in prep.attacks],
                "budget": prep.config.budget, "seed": prep.config.seed, "device": str(prep.device),
                "batch_size": prep.config.batch_size, "norm": "linf", "defense": prep.config.defense,
            },
            "clean": None,
            "attacks": [],
            "worst_case": [],
            "gallery": [],
            "checks": None,
            "clinical": None,
            "targeted": None,
            "gates": None,
            "environment": environment(prep.device),
        }

    def _positive_and_criteria(self) -> tuple[dict[str, Any], list[Any]]:
        prep = self.prep
        positive = resolve_positive_class(self.config.positive_class, prep.class_names,
                                          prep.modality.positive_class, prep.modality.name)
        criteria = parse_criteria(self.config.fail_under)
        validate_criteria(criteria, eps_255=prep.eps_255, attacks=[a.name for a in prep.attacks],
                          positive=positive["name"], binary=prep.num_classes == 2)
        return positive, criteria

    def _validity_and_clinical(self, results: dict[str, Any], positive: dict[str, Any]) -> None:
        """Targeted attacks, validity checks and clinical metrics, after the attack steps. The
        targeted attacks run first: on two-class models the checks reuse their PGD trajectories."""
        targeted, scores = None, None
        if target_of(self.prep) is not None:  # targeted PGD needs gradients a query-only target lacks
            results["targeted_skipped"] = "targeted PGD needs input gradients; the target answers queries only"
        elif positive["index"] is not None and not self.stop.check("clinical targeted attacks"):
            with self.progress.task("targeted attacks (clinical directions)", None):
                targeted, scores = run_targeted(self, positive, results)
        results["targeted"] = targeted
        if self.config.checks:
            with self.progress.task("validity checks", 11) as task:
                results["checks"] = run_checks(self, results, self.config.check_samples, task)
        else:
            results["checks"] = skipped_checks("turned off (--skip-checks)")
        write_results(Path(self.config.out), results)
        results["clinical"] = clinical_metrics(results, positive, scores)
        if scores:
            results["samples"]["adversarial_positive_scores"] = {
                f"{eps:g}": np.round(values, 6).tolist() for eps, values in scores.items()}

    # ------------------------------------------------------------ skeleton hooks
    def before(self) -> None:
        self.positive, self.criteria = self._positive_and_criteria()  # fail fast, before any attack
        self.corruption = CorruptionRun(self)  # natural robustness: families and severities checked now

    def begin(self, results: dict[str, Any]) -> None:
        results["clean"] = self.clean_pass()
        results["samples"] = {
            "ids": self.ids, "labels": self.labels.tolist(), "clean_pred": self.clean_pred.tolist(),
            "clean_confidence": self.clean_conf.tolist(), "clean_probs": self.clean_probs.round(6).tolist(),
        }
        if target_of(self.prep) is None:  # timing a query-only target would spend queries on it
            sample_x = self._batch(np.arange(min(self.n, self.config.batch_size)))[0]
            self.pass_timer = PassTimer(self.prep.model.module, sample_x)
            results["timing"] = {"one_pass": time_one_pass(self.prep.model.module, sample_x)}
        self.broken_before = np.zeros(self.n, dtype=bool)  # cascade: broken at a smaller eps

    def start_eps(self, eps_255: float) -> None:
        self.broken_now = self.broken_before.copy()

    def step(self, attack: Any, eps_255: float) -> dict[str, Any]:
        if self.config.mode == "cascade":
            candidates = np.nonzero(self.correct & ~self.broken_now)[0]
        else:
            candidates = np.nonzero(self.correct)[0]
        return self.run_step(attack, eps_255, candidates)

    def record(self, entry: dict[str, Any]) -> None:
        """Robust accuracy of the entry: cumulative over this eps's attacks so far in the
        cascade, the attack's own with ``--independent``."""
        for i in entry["samples"]["broken"]:
            self.broken_now[i] = True
        if self.config.mode == "cascade":
            robust = self.correct & ~self.broken_now
        else:
            robust = self.correct & ~np.isin(np.arange(self.n), entry["samples"]["broken"])
        k = int(robust.sum())
        entry["robust_accuracy"] = k / self.n
        entry["ci95"] = list(proportion_ci(k, self.n))
        entry["ci_method"] = "wilson"
        entry["mode"] = self.config.mode

    def end_eps(self, eps_255: float) -> None:
        if self.config.mode == "cascade":
            self.broken_before = self.broken_now

    def finish_units(self) -> float:
        """Planned work after the steps, for the whole-audit ETA (images x forward+backward
        passes): the checks on their subsample (PGD at every eps, twice the steps with
        restarts, the 64/255 PGD, FGSM, noise draws as forwards) and the targeted attacks
        in both clinical directions at every eps on every image."""
        pgd = self.prep.params.get("pgd") or {}
        steps = int(pgd.get("steps") or 10)
        starts = max(int(pgd.get("restarts") or 0), 1)
        eps_count = len(self.prep.eps_255)
        units = 0.0
        positive = getattr(self, "positive", None) or {}
        # two classes, a positive class, no restarts: the checks read PGD at every eps from the
        # targeted trajectories (auditor.evaluation.battery), which are counted below
        reused = positive.get("index") is not None and self.prep.num_classes == 2 and starts == 1
        if self.config.checks:
            samples = min(self.n, max(int(self.config.check_samples), 0))
            per_image = ((0 if reused else steps * starts * eps_count) + 2 * steps * CONVERGENCE_RESTARTS
                         + LARGE_EPS_STEPS + eps_count + NOISE_DRAWS / 3)
            units += samples * per_image
        if positive.get("index") is not None:
            units += self.n * (steps + 1) * starts * eps_count
        return units + corruption_units(self)

    def finish(self, results: dict[str, Any]) -> None:
        out, config = Path(self.config.out), self.config
        self.corruption.run(results)  # results["corruption"], written step by step
        results.update(defense_results(self, results))  # non-adaptive numbers and baseline of a --defense
        if config.detector_fit is not None and results.get("detection") is None:
            results["detection"] = detection_for_audit(self)
            write_results(out, results)
        results["universal"] = uap_for_audit(self, results) if config.uap else None
        results["saliency"] = saliency_for_audit(self) if config.saliency else None
        self._validity_and_clinical(results, self.positive)
        write_results(out, results)
        results["summary"] = summarise(results)
        results["gates"] = evaluate_gates(self.criteria, results)
        results["status"] = "complete"
        write_results(out, results)
        if config.junit and results["gates"]:
            write_junit(results["gates"], Path(config.junit), model=results["model"]["name"])

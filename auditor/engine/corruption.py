"""Natural robustness: the corruption steps of a classification audit, beside the attacks.

One step is one corruption family at one severity over every audited image: the family's
transform, then one forward pass. Each image's randomness comes from ``--seed``, the family,
the severity and the image's id (:func:`image_seed`), so the numbers do not depend on the
batch size or on which images share a batch. Steps are written to ``results.json`` as they
finish and a ``--resume`` reuses them. Segmentation audits have no corruption steps yet.

What ``results["corruption"]`` holds: the families with every parameter per severity, one
entry per step (accuracy with its Wilson interval, per class, sensitivity and specificity
of the positive class, the predictions, timing and overhead), the per-image worst case over
families at each severity, the relative corruption error and a gallery row per family.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditor.errors import UsageError
from auditor.evaluation.clinical import proportion
from auditor.gates import is_corruption
from auditor.imagery import png_base64
from auditor.interfaces import SEVERITIES
from auditor.results import read_results, write_results

GALLERY_SEVERITIES = (1, 3, 5)
CORRUPTION_UNITS = 1 / 3  # a forward pass, in the whole-audit plan's forward + backward units
RELATIVE_ERROR_METHOD = (
    "relative corruption error in the manner of ImageNet-C's relative mCE (Hendrycks and Dietterich 2019), "
    "normalised by this model's own clean error instead of AlexNet's: per family, the mean over severities of "
    "(1 - corrupted accuracy), divided by (1 - clean accuracy); the summary is the mean over families")


def image_seed(seed: int, family: str, severity: int, image_id: str) -> int:
    """The seed of one image's corruption: the same for the same --seed, family, severity
    and image, whatever batch the image is in."""
    digest = hashlib.sha256(f"{seed}:{family}:{severity}:{image_id}".encode()).hexdigest()
    return int(digest[:15], 16)


def parse_corruptions(text: str | None, registry: Any, modality: str) -> list[str]:
    """``--corruptions``: ``none`` (or nothing), ``default`` (the modality preset's families)
    or comma-separated family names, checked against the registry."""
    value = (text or "none").strip()
    if value.lower() == "none":
        return []
    if value.lower() == "default":
        return list(registry.get("modalities", modality).corruptions)
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise UsageError("--corruptions: give default, none or family names (see `medaudit plugins`)")
    for name in names:
        registry.get("corruptions", name)  # unknown: a usage error naming the known families
    return list(dict.fromkeys(names))


def resolve_families(registry: Any, names: list[str], severities: list[int], channels: int, task: str) -> list[Any]:
    """The requested families, checked before any work: known names, valid severities, the
    image channels each family handles; classification only."""
    if not names:
        return []
    if task != "classification":
        raise UsageError("--corruptions: natural-robustness steps are audited for classification models only")
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise UsageError(f"--severities: {bad or 'none'} is not among 1, 2, 3, 4, 5")
    families = [registry.get("corruptions", name) for name in names]
    for family in families:
        if channels not in family.channels:
            raise UsageError(f"--corruptions: '{family.name}' needs {' or '.join(map(str, family.channels))}-channel "
                             f"images; this audit has {channels}")
    return families


def corruption_units(audit: Any) -> float:
    """The steps' planned work for the whole-audit ETA: one forward pass per image and step."""
    return audit.n * CORRUPTION_UNITS * len(audit.config.corruptions) * len(audit.config.severities)


def _clinical(labels: np.ndarray, preds: np.ndarray, positive: int | None) -> dict[str, Any] | None:
    if positive is None:
        return None
    pos, neg = labels == positive, labels != positive
    sensitivity = proportion(int((preds[pos] == positive).sum()), int(pos.sum()))
    missed = proportion(int((preds[pos] != positive).sum()), int(pos.sum()))
    return {"sensitivity": sensitivity, "specificity": proportion(int((preds[neg] != positive).sum()), int(neg.sum())),
            "missed_positive": missed}


class CorruptionRun:
    """The corruption steps of one classification audit (``audit``: its engine object)."""

    def __init__(self, audit: Any) -> None:
        self.audit = audit
        prep = audit.prep
        self.families = resolve_families(prep.registry, list(audit.config.corruptions), list(audit.config.severities),
                                         prep.input_shape[0], prep.task)
        self.severities = sorted(set(int(s) for s in audit.config.severities))
        self.size = (int(prep.input_shape[1]), int(prep.input_shape[2]))
        self.check_gates(getattr(audit, "criteria", None) or [])
        self.done = self._previous_steps()  # now: the audit rewrites results.json from its clean pass on

    def check_gates(self, criteria: list[Any]) -> None:
        """A corruption gate must name an audited severity (and family), before any work."""
        names = [f.name for f in self.families]
        for c in criteria:
            if not is_corruption(c.metric):
                continue
            family = c.metric.split(":", 1)[1] if ":" in c.metric else None
            if not names:
                raise UsageError(f"--fail-under: '{c.text}' needs corruption steps: add --corruptions default")
            if family is not None and family not in names:
                raise UsageError(f"--fail-under: '{c.text}': '{family}' is not an audited corruption "
                                 f"(audited: {', '.join(names)})")
            if int(c.eps_255) not in self.severities:
                raise UsageError(f"--fail-under: '{c.text}': severity {int(c.eps_255)} is not audited "
                                 f"(--severities {','.join(map(str, self.severities))})")

    def params(self, family: Any, severity: int) -> dict[str, Any]:
        return family.parameters(severity, self.audit.prep.modality.name, self.size)

    def _previous_steps(self) -> dict[tuple[str, int], dict[str, Any]]:
        config = self.audit.config
        path = Path(config.out) / "results.json"
        if not config.resume or not path.is_file():
            return {}
        previous = read_results(path).get("corruption") or {}
        return {(e["family"], int(e["severity"])): e for e in previous.get("steps") or []}

    def step(self, family: Any, severity: int) -> dict[str, Any]:
        audit = self.audit
        params = self.params(family, severity)
        preds = np.zeros(audit.n, dtype=np.int64)
        transform_s = forward_s = 0.0
        calls: dict[int, list[int]] = {}
        started = time.perf_counter()
        with audit.progress.task(f"{family.name} severity {severity}", audit.n) as task:
            for chunk in audit._chunks(np.arange(audit.n)):
                x, _, ids = audit._batch(chunk)
                seeds = [image_seed(audit.config.seed, family.name, severity, i) for i in ids]
                t0 = time.perf_counter()
                corrupted = family.corrupt(x, params, seeds)
                t1 = time.perf_counter()
                with torch.no_grad():
                    preds[chunk] = audit._predict(corrupted).argmax(1).cpu().numpy()
                forward_s += time.perf_counter() - t1
                transform_s += t1 - t0
                calls.setdefault(len(chunk), [0, 0])[0] += 1
                task.advance(len(chunk))
        elapsed = time.perf_counter() - started
        block = audit._accuracy_block(preds == audit.labels, preds)
        ideal = audit.pass_timer.ideal_s(calls) if getattr(audit, "pass_timer", None) else 0.0
        return {
            "family": family.name, "severity": severity, "params": params,
            **{k: block[k] for k in ("accuracy", "n", "n_correct", "ci95", "ci_method", "per_class", "confusion")},
            "clinical": _clinical(audit.labels, preds, audit.positive.get("index")),
            "samples": {"pred": preds.tolist()},
            "time_s": elapsed, "transform_s": transform_s, "forward_s": forward_s,
            "overhead": {"ideal_s": ideal, "ratio": (transform_s + forward_s) / ideal if ideal > 0 else None,
                         "step_ratio": elapsed / ideal if ideal > 0 else None,
                         "calls_by_batch_size": {str(b): v for b, v in sorted(calls.items())}},
        }

    def run(self, results: dict[str, Any]) -> dict[str, Any] | None:
        if not self.families:
            return None
        done = self.done
        block = self.header()
        block["gallery"] = self.gallery()  # first: it also imports each family's library outside the timed steps
        results["corruption"] = block
        for family in self.families:
            for severity in self.severities:
                key = (family.name, severity)
                entry = done.get(key) or self.step(family, severity)
                entry["resumed"] = key in done
                block["steps"].append(entry)
                write_results(Path(self.audit.config.out), results)  # a finished step survives a crash
        self.summarise(block, results["clean"])
        return block

    def header(self) -> dict[str, Any]:
        positive = self.audit.positive
        return {
            "families": [{"name": f.name, "title": f.title or f.name, "reference": f.reference, "library": f.library,
                          "parameter": f.parameter, "modalities": list(f.modalities), "vectorised": f.vectorised,
                          "params": {str(s): self.params(f, s) for s in SEVERITIES}} for f in self.families],
            "severities": self.severities, "modality": self.audit.prep.modality.name,
            "positive_class": positive.get("name") if positive.get("index") is not None else None,
            "seeding": "per image: sha256 of --seed, family, severity and image id",
            "clean_clinical": _clinical(self.audit.labels, self.audit.clean_pred, positive.get("index")),
            "steps": [],
        }

    def summarise(self, block: dict[str, Any], clean: dict[str, Any]) -> None:
        audit = self.audit
        steps = block["steps"]
        block["worst_case"] = []
        for severity in self.severities:
            at = [e for e in steps if e["severity"] == severity]
            preds = audit.clean_pred.copy()
            robust = np.ones(audit.n, dtype=bool)
            for e in at:  # an image counts as correct only when it is correct under every family
                p = np.asarray(e["samples"]["pred"], dtype=np.int64)
                wrong = (p != audit.labels) & robust
                preds[wrong] = p[wrong]
                robust &= p == audit.labels
            acc = audit._accuracy_block(robust, np.where(robust, audit.labels, preds))
            worst_family = min(at, key=lambda e: e["accuracy"])["family"] if at else None
            block["worst_case"].append({
                "severity": severity, "accuracy": acc["accuracy"], "n": acc["n"], "n_correct": acc["n_correct"],
                "ci95": acc["ci95"], "ci_method": "wilson", "per_class": acc["per_class"],
                "clinical": _clinical(audit.labels, np.where(robust, audit.labels, preds), audit.positive.get("index")),
                "lowest_family": worst_family})
        block["relative_error"] = relative_error(steps, clean["accuracy"], [f.name for f in self.families])
        block["consequence"] = consequence(block)

    def gallery(self) -> list[dict[str, Any]]:
        """One image (the first of the positive class, else the first) per family at
        severities 1, 3 and 5, so a reviewer can see what each severity looks like."""
        audit = self.audit
        index = audit.positive.get("index")
        pick = int(np.argmax(audit.labels == index)) if index is not None and (audit.labels == index).any() else 0
        x, _, ids = audit._batch(np.asarray([pick]))
        rows = []
        for family in self.families:
            images = []
            for severity in GALLERY_SEVERITIES:
                seed = image_seed(audit.config.seed, family.name, severity, ids[0])
                images.append({"severity": severity, "png": png_base64(family.corrupt(x, self.params(family, severity),
                                                                                      [seed])[0])})
            rows.append({"family": family.name, "title": family.title or family.name, "image_id": ids[0],
                         "clean_png": png_base64(x[0]), "images": images})
        return rows


def relative_error(steps: list[dict[str, Any]], clean_accuracy: float, families: list[str]) -> dict[str, Any]:
    """Per family and overall, the relative corruption error (``RELATIVE_ERROR_METHOD``);
    None when the model makes no clean error (the ratio is undefined)."""
    clean_error = 1.0 - clean_accuracy
    per_family = {}
    for name in families:
        errors = [1.0 - e["accuracy"] for e in steps if e["family"] == name]
        per_family[name] = (float(np.mean(errors)) / clean_error) if errors and clean_error > 0 else None
    values = [v for v in per_family.values() if v is not None]
    return {"per_family": per_family, "mean": float(np.mean(values)) if values else None,
            "clean_error": clean_error, "method": RELATIVE_ERROR_METHOD}


def consequence(block: dict[str, Any]) -> dict[str, Any] | None:
    """The clinical consequence in numbers, for the report's sentence: at the middle audited
    severity, the family that misses the most positives, and how many it misses."""
    if not block.get("positive_class") or not block["steps"]:
        return None
    severities = block["severities"]
    severity = 3 if 3 in severities else severities[len(severities) // 2]
    at = [e for e in block["steps"] if e["severity"] == severity and e.get("clinical")]
    if not at:
        return None
    worst = max(at, key=lambda e: e["clinical"]["missed_positive"]["value"] or 0.0)
    missed = worst["clinical"]["missed_positive"]
    clean = (block.get("clean_clinical") or {}).get("missed_positive") or {}
    return {"severity": severity, "family": worst["family"], "positive_class": block["positive_class"],
            "missed": missed["value"], "ci95": missed["ci95"], "n": missed["n"], "clean_missed": clean.get("value")}

"""``medaudit transfer``: every model as the source of adversarial images for every other.

For each eps and each source model, the registered white-box attack (PGD by default)
crafts images on the source from the data's true labels, through the one step routine
(``auditor.transfer.craft``, the code ``--surrogate`` uses); every model (the source
included) then classifies them. The cell (source, target) holds the attack's success on
the target, the share of the target's clean-correct images it misclassifies, and the
target's accuracy on all images; the diagonal is the white-box success. Each model is
opened by ``auditor.engine.prepare`` exactly as ``medaudit run`` opens it, so formats,
input sizes and bad inputs behave the same; the models must agree on the input shape,
the classes and the images.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

from auditor import __version__
from auditor.accounting import PassCounter
from auditor.config import AuditConfig
from auditor.engine.prepare import Prepared, prepare
from auditor.errors import UsageError
from auditor.interfaces import AttackContext
from auditor.progress import Progress
from auditor.registry import Registry
from auditor.results import SCHEMA_VERSION
from auditor.stats import proportion_ci
from auditor.steps import step_seed
from auditor.transfer import craft, model_identity, surrogate_context

KIND = "transfer-matrix"  # results.json "kind": the reporters render it with transfer.html.jinja


def prepare_models(config: AuditConfig, models: list[Any], attack: str, registry: Registry,
                   progress: Progress) -> list[Prepared]:
    """Open every model on the same data; refuse models that disagree on what they classify."""
    if len(models) < 2:
        raise UsageError("medaudit transfer needs at least two models")
    preps = [prepare(replace(config, model=m, attacks=[attack], checks=False, extra={}), registry, progress)
             for m in models]
    first = preps[0]
    if first.task != "classification":
        raise UsageError("medaudit transfer compares classification models only")
    for p in preps[1:]:
        for what, a, b in (("input shape", first.input_shape, p.input_shape),
                           ("number of classes", first.num_classes, p.num_classes),
                           ("task", first.task, p.task),
                           ("images", first.dataset.fingerprint(), p.dataset.fingerprint())):
            if a != b:
                raise UsageError(f"{p.config.model} and {first.config.model} differ in {what} ({b} vs {a}); "
                                 "transfer needs models of the same input and classes (set --input-size/--channels)")
    return preps


def _predict(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x).argmax(1)


def transfer_matrix(preps: list[Prepared], attack_name: str, progress: Progress, command: str = "") -> dict[str, Any]:
    """The source x target matrix per eps, as results.json holds it."""
    first = preps[0]
    registry, config = first.registry, first.config
    attack = registry.get("attacks", attack_name)
    dataset, n, k = first.dataset, len(first.dataset), len(preps)
    chunks = [np.arange(i, min(i + config.batch_size, n)) for i in range(0, n, config.batch_size)]
    like = AttackContext(model=first.model.module, device=first.device, num_classes=first.num_classes,
                         input_shape=first.input_shape, task=first.task, seed=config.seed,
                         batch_size=config.batch_size, counter=PassCounter())
    ctxs = [surrogate_context(p.model.module, like) for p in preps]
    t0 = time.perf_counter()
    labels = np.asarray(dataset.targets(), dtype=np.int64)
    clean_correct = np.zeros((k, n), dtype=bool)
    with progress.task("clean pass", n) as task:
        for chunk in chunks:
            batch = dataset.load(chunk)
            x, y = batch.images.to(first.device), batch.targets.to(first.device)
            for j, p in enumerate(preps):
                clean_correct[j, chunk] = (_predict(p.model.module, x) == y).cpu().numpy()
            task.advance(len(chunk))
    matrix = []
    for eps_255 in first.eps_255:
        fooled = np.zeros((k, k), dtype=np.int64)
        correct = np.zeros((k, k), dtype=np.int64)
        with progress.task(f"{attack_name} eps={eps_255:g}/255 on {k} models", n * k) as task:
            for chunk in chunks:
                batch = dataset.load(chunk)
                x, y = batch.images.to(first.device), batch.targets.to(first.device)
                for i, p in enumerate(preps):
                    seed = step_seed(config.seed, f"transfer:{attack_name}:{i}", eps_255)
                    x_adv = craft(attack, ctxs[i], x, y, eps_255 / 255.0, p.params[attack_name], seed, chunk)
                    for j, q in enumerate(preps):
                        wrong = (_predict(q.model.module, x_adv) != y).cpu().numpy()
                        fooled[i, j] += int((wrong & clean_correct[j, chunk]).sum())
                        correct[i, j] += int((~wrong).sum())
                    task.advance(len(chunk))
        matrix.append(_matrix_entry(eps_255, fooled, correct, clean_correct.sum(1), n))
    return _results(preps, attack_name, matrix, clean_correct, labels, command, time.perf_counter() - t0)


def _matrix_entry(eps_255: float, fooled: np.ndarray, correct: np.ndarray, n_correct: np.ndarray,
                  n: int) -> dict[str, Any]:
    k = len(n_correct)
    success = [[fooled[i, j] / n_correct[j] if n_correct[j] else None for j in range(k)] for i in range(k)]
    return {
        "eps_255": eps_255, "eps": eps_255 / 255.0,
        "success": success,
        "success_ci95": [[list(proportion_ci(int(fooled[i, j]), int(n_correct[j]))) for j in range(k)]
                         for i in range(k)],
        "n_fooled": fooled.tolist(),
        "target_accuracy": (correct / n).tolist(),
    }


def _results(preps: list[Prepared], attack_name: str, matrix: list[dict[str, Any]], clean_correct: np.ndarray,
             labels: np.ndarray, command: str, seconds: float) -> dict[str, Any]:
    first = preps[0]
    config = first.config
    n = len(labels)
    models = []
    for j, p in enumerate(preps):
        k = int(clean_correct[j].sum())
        models.append({**model_identity(p.config.model, p.model.sha256, p.model.format),
                       "clean_accuracy": k / n, "n_correct": k, "ci95": list(proportion_ci(k, n))})
    return {
        "schema_version": SCHEMA_VERSION, "kind": KIND, "status": "complete",
        "tool": {"name": "medaudit", "version": __version__, "command": command},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": models,
        "data": {"source": str(config.data), "format": first.dataset.format, "n_samples": n,
                 "sha256": first.dataset.fingerprint(), "split": config.split, "limit": config.limit,
                 "class_names": list(first.class_names),
                 "per_class_counts": {name: int((labels == c).sum()) for c, name in enumerate(first.class_names)}},
        "config": {"eps_255": list(first.eps_255), "budget": config.budget, "seed": config.seed,
                   "batch_size": config.batch_size, "input_shape": list(first.input_shape)},
        "attack": {"name": attack_name, "params": {key: v for key, v in first.params[attack_name].items()
                                                    if key != "seed"},
                   "success_definition": "share of the target's clean-correct images the target misclassifies"},
        "matrix": matrix,
        "timing": {"wall_s": seconds},
    }

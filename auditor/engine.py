"""The audit loop for classification models.

load model -> load data -> clean pass -> attack steps (eps ascending, attacks cheap to
expensive) -> summary -> results.json. The engine never prints and never renders.

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

import base64
import hashlib
import io
import platform
import shlex
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from auditor import __version__
from auditor.accounting import CountingModel, PassCounter, PassTimer, time_one_pass
from auditor.config import AuditConfig, config_hash
from auditor.defenses import defense_results
from auditor.errors import InputError, UsageError
from auditor.gates import evaluate_gates, write_junit
from auditor.interfaces import AttackContext, AttackResult, Batch, DataOptions, Dataset
from auditor.models import call_model, is_out_of_memory
from auditor.progress import Progress
from auditor.registry import Registry
from auditor.results import SCHEMA_VERSION, read_results, write_results
from auditor.sandbox import environment_fact as sandbox_fact
from auditor.stats import proportion_ci

GALLERY_PER_CLASS = 2
CACHE_BYTES = 256 * 2**20


class SampleCache:
    """Decoded samples, bounded in bytes so memory does not grow with the data set."""

    def __init__(self, dataset: Dataset, max_bytes: int = CACHE_BYTES) -> None:
        self.dataset = dataset
        self.max_bytes = max_bytes
        self.items: OrderedDict[int, tuple[torch.Tensor, torch.Tensor, str, Any]] = OrderedDict()
        self.bytes = 0

    def load(self, indices: Sequence[int]) -> Batch:
        missing = [int(i) for i in indices if int(i) not in self.items]
        if missing:
            batch = self.dataset.load(missing)
            for j, i in enumerate(missing):
                roi = batch.roi[j].clone() if batch.roi is not None else None
                # clone: a view would keep the whole decoded batch alive after eviction
                item = (batch.images[j].clone(), batch.targets[j].clone(), batch.ids[j], roi)
                self.items[i] = item
                self.bytes += _item_bytes(item)
        # Requested samples become the most recent before evicting, so the eviction below
        # (oldest first) can never drop one of them.
        for i in indices:
            self.items.move_to_end(int(i))
        while self.bytes > self.max_bytes and len(self.items) > len(indices):
            _, old = self.items.popitem(last=False)
            self.bytes -= _item_bytes(old)
        items = [self.items[int(i)] for i in indices]
        rois = [it[3] for it in items]
        return Batch(
            images=torch.stack([it[0] for it in items]),
            targets=torch.stack([it[1] for it in items]),
            ids=[it[2] for it in items],
            indices=np.asarray(indices, dtype=np.int64),
            roi=torch.stack(rois) if rois and rois[0] is not None else None,
        )


def _item_bytes(item: tuple[torch.Tensor, torch.Tensor, str, Any]) -> int:
    return sum(t.numel() * t.element_size() for t in (item[0], item[1], item[3]) if t is not None)


def step_seed(seed: int, attack: str, eps_255: float, chunk: int) -> int:
    digest = hashlib.sha256(f"{seed}:{attack}:{eps_255:g}:{chunk}".encode()).hexdigest()
    return int(digest[:8], 16)


def attack_chunk(attack: Any, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float,
                 params: dict[str, Any], seed: int) -> tuple[AttackResult, torch.Tensor, bool, float]:
    """One chunk of an attack step, as every task runs it: seeded (``params["seed"]`` and the
    global generators), split on out-of-memory, timed, and held to the threat model. Returns
    the attack's result, the adversarial images (projected back into the eps ball and [0,1]
    when the attack left them), whether that projection was needed, and the attack's seconds."""
    params["seed"] = seed
    torch.manual_seed(seed)
    np.random.seed(seed)
    t0 = time.perf_counter()
    result = run_attack_fitting_memory(attack, ctx, x.clone(), y, eps, params)
    seconds = time.perf_counter() - t0
    x_adv = result.x_adv.detach().to(x.dtype)
    if x_adv.shape != x.shape:
        raise InputError(f"attack '{attack.name}' returned shape {tuple(x_adv.shape)} for {tuple(x.shape)}")
    outside = (float((x_adv - x).abs().max()) > eps + 1e-6 or float(x_adv.min()) < 0 or float(x_adv.max()) > 1)
    if outside:  # the engine enforces the threat model whatever the attack did
        x_adv = torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0.0, 1.0)
    return result, x_adv, outside, seconds


def merge_details(into: dict[str, Any], details: dict[str, Any]) -> None:
    """The rule for an attack's ``details`` across chunks (and OOM splits) of one step:
    numbers add up, at the top level and inside nested dicts; anything else is replaced."""
    for key, value in details.items():
        if isinstance(value, dict):
            merge_details(into.setdefault(key, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            into[key] = into.get(key, 0) + value
        else:
            into[key] = value


def query_block(queries: list[float], forward_samples: int, n_attacked: int) -> dict[str, Any]:
    """Queries of a black-box step: as the attack reported them per sample, else the
    forward passes counted, spread over the samples attacked."""
    if queries:
        return {"mean": float(np.mean(queries)), "max": float(np.max(queries)), "total": float(np.sum(queries)),
                "source": "attack"}
    return {"mean": forward_samples / n_attacked if n_attacked else 0.0, "max": None,
            "total": float(forward_samples), "source": "forward passes counted"}


def run_attack_fitting_memory(attack: Any, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float,
                              params: dict[str, Any]) -> AttackResult:
    """``attack.run`` on one chunk; when the accelerator runs out of memory the chunk is
    halved and each half attacked on its own (recursively), down to a single sample.

    Each half starts from the chunk's seed, so a split run is reproducible, and an attack
    whose result for a sample does not depend on the rest of the batch gives the same
    numbers as an unsplit run."""
    try:
        return attack.run(ctx, x, y, eps, params)
    except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
        if not is_out_of_memory(exc):
            raise
    # Out of the except block: the traceback no longer pins the failed attempt's tensors.
    if x.device.type == "cuda":
        torch.cuda.empty_cache()
    if len(x) == 1:
        raise InputError(
            f"one sample ({'x'.join(str(d) for d in x.shape[1:])}) does not fit in GPU memory for attack "
            f"'{attack.name}'; use a smaller --input-size or --device cpu"
        )
    half = (len(x) + 1) // 2
    parts = []
    for part in (slice(0, half), slice(half, None)):
        if params.get("seed") is not None:
            torch.manual_seed(params["seed"])
            np.random.seed(params["seed"])
        parts.append(run_attack_fitting_memory(attack, ctx, x[part], y[part], eps, params))
    queries = None
    if all(p.queries is not None for p in parts):
        queries = np.concatenate([np.asarray(torch.as_tensor(p.queries).cpu(), dtype=np.float64).ravel() for p in parts])
    details: dict[str, Any] = {}
    for p in parts:
        merge_details(details, p.details)
    memory = details.setdefault("memory", {})  # nested: adds up across chunks in the entry
    memory["oom_splits"] = memory.get("oom_splits", 0) + 1
    return AttackResult(torch.cat([p.x_adv.detach() for p in parts]), queries, details)


def results_header(prep: Prepared, command: str | None, cfg_hash: str, n: int) -> dict[str, Any]:
    """The parts of ``results.json`` every task starts with: provenance, model, data,
    modality (each task adds its own ``config`` and result blocks)."""
    data_desc = dict(prep.dataset.describe())
    data_desc.update({
        "source": str(prep.config.data), "format": prep.dataset.format, "n_samples": n,
        "sha256": prep.dataset.fingerprint(), "split": prep.config.split or data_desc.get("split"),
        "limit": prep.config.limit, "synthetic": bool(prep.config.extra.get("synthetic")),
    })
    if prep.config.extra.get("training"):
        data_desc["training"] = prep.config.extra["training"]
    probabilities = prep.probe is not None and prep.probe.looks_like_probabilities
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "medaudit", "version": __version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "config_hash": cfg_hash,
        "status": "running",
        "model": {
            "path": str(prep.model.path), "name": Path(prep.model.path).name, "sha256": prep.model.sha256,
            "format": prep.model.format, "task": prep.task, "num_classes": prep.num_classes,
            "class_names": prep.class_names, "input_shape": list(prep.input_shape),
            "normalization": {"mean": prep.config.mean, "std": prep.config.std},
            "outputs": "probabilities" if probabilities else "logits",
        },
        "data": data_desc,
        "modality": {
            "name": prep.modality.name, "title": prep.modality.title, "threats": prep.modality.threats,
            "defenses": list(prep.modality.defenses), "notes": prep.modality.notes,
            "positive_class": prep.modality.positive_class,
        },
        "warnings": list(prep.warnings),
    }


def resume_state(resume: bool, out: Path, cfg_hash: str, results: dict[str, Any],
                 progress: Progress) -> tuple[dict[tuple[str, float], dict[str, Any]], list[dict[str, Any]]]:
    """``--resume``: the finished attack steps and gallery of the audit in ``out``, keyed by
    (attack, eps); ``results`` keeps its creation time and counts the resume. Refused when
    the model, data or configuration changed (``config_hash``)."""
    if not resume or not (out / "results.json").is_file():
        return {}, []
    previous = read_results(out / "results.json")
    if previous.get("config_hash") != cfg_hash:
        raise UsageError(
            f"cannot resume {out}: the model, data or configuration changed since that audit "
            "started; use a new --out folder or drop --resume to start over"
        )
    done = {(e["attack"], float(e["eps_255"])): e for e in previous.get("attacks", [])}
    results["created"] = previous.get("created", results["created"])
    results["resumed"] = previous.get("resumed", 0) + 1
    progress.note(f"resuming: {len(done)} attack steps already done in {out}")
    return done, list(previous.get("gallery", []))


def overhead_block(timer: PassTimer | None, attack_time: float, elapsed: float, calls: dict[int, list[int]],
                   verify_calls: dict[int, list[int]]) -> dict[str, Any] | None:
    """``ratio``: the attack's wall time over what its counted passes cost, each call priced
    at its own batch size. ``step_ratio``: the whole step (data loading, the engine's check
    of every result, bookkeeping) over the same passes plus the check's."""
    if timer is None:
        return None
    ideal = timer.ideal_s(calls)
    ideal_step = ideal + timer.ideal_s(verify_calls)
    return {
        "ideal_s": ideal, "ratio": attack_time / ideal if ideal > 0 else None,
        "step_ideal_s": ideal_step, "step_ratio": elapsed / ideal_step if ideal_step > 0 else None,
        "calls_by_batch_size": {str(b): v for b, v in sorted(calls.items())},
    }


def environment(device: torch.device) -> dict[str, Any]:
    try:
        import art

        art_version = art.__version__
    except Exception:  # pragma: no cover - ART is a dependency
        art_version = None
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "art": art_version,
        "medaudit": __version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    env.update(sandbox_fact())  # how the model was confined (auditor.sandbox)
    return env


def png_base64(image: torch.Tensor, max_side: int = 160) -> str:
    """A (C,H,W) image in [0,1] as a base64 PNG for the report gallery."""
    from PIL import Image

    arr = (image.detach().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    img = Image.fromarray(arr)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.NEAREST)
    elif max(img.size) < 96:
        factor = max(1, 96 // max(img.size))
        img = img.resize((img.size[0] * factor, img.size[1] * factor), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class Prepared:
    """Everything loaded and checked before the first attack runs."""

    config: AuditConfig
    model: Any  # auditor.models.LoadedModel
    dataset: Dataset
    modality: Any
    task: str
    num_classes: int
    class_names: list[str]
    input_shape: tuple[int, int, int]
    device: torch.device
    attacks: list[Any]
    params: dict[str, dict[str, Any]]
    eps_255: list[float]
    warnings: list[str] = field(default_factory=list)
    probe: Any = None
    registry: Any = None
    defense: Any = None  # auditor.defenses.DefendedModels when --defense is given


def prepare(config: AuditConfig, registry: Registry, progress: Progress | None = None) -> Prepared:
    """Load and validate the model, data and attack configuration."""
    from auditor.config import resolve_device
    from auditor.datasets import open_dataset
    from auditor.models import infer_input_channels, open_model, probe_model

    progress = progress or Progress()
    device = resolve_device(config.device)
    modality = registry.get("modalities", config.modality)
    if config.budget not in ("quick", "standard", "thorough"):
        raise UsageError(f"--budget: '{config.budget}' is not quick, standard or thorough")
    if config.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if config.limit is not None and config.limit < 1:
        raise UsageError("--limit must be at least 1")

    with progress.task("loading model", None):
        model = open_model(
            registry, config.model, format=config.model_format, arch=config.arch,
            trust_model=config.trust_model, device=str(device), mean=config.mean, std=config.std,
        )
    channels = config.channels or infer_input_channels(model.module) or modality.channels
    input_size = config.input_size or modality.input_size
    input_shape = (channels, input_size[0], input_size[1])
    probe = probe_model(model.module, input_shape, device)
    task = config.task or probe.task
    warnings: list[str] = []
    if task == "classification" and probe.binary:
        from auditor.models import SingleLogitAsTwoClasses

        model.module = SingleLogitAsTwoClasses(model.module)
        warnings.append("the model has one output logit; it is audited as two classes [0, z] (sigmoid)")
    if probe.looks_like_probabilities:
        message = (
            f"the model's outputs look like probabilities (softmax/sigmoid at the end), not logits: "
            "gradient attacks on saturated probabilities underestimate vulnerability"
        )
        if not config.allow_probabilities:
            raise InputError(message + "; export the model without its final softmax, or pass --allow-probabilities")
        warnings.append(message)

    with progress.task("opening data", None):
        options = DataOptions(
            channels=channels, input_size=input_size, split=config.split, classes=config.classes,
            limit=config.limit, seed=config.seed, task=task, roi=config.roi,
            follow_symlinks=config.follow_symlinks,
        )
        dataset = open_dataset(registry, config.data, options, source=config.data_format)
    if len(dataset) == 0:
        raise InputError(f"data set {config.data} is empty")

    num_classes = probe.num_classes
    class_names = list(dataset.class_names)
    if task == "classification":
        labels = dataset.targets()
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise InputError(
                f"label {int(labels.max())} is outside the model's {num_classes} classes "
                f"(data classes: {', '.join(class_names)})"
            )
        if len(class_names) < num_classes:
            class_names = class_names + [str(i) for i in range(len(class_names), num_classes)]
        elif len(class_names) > num_classes:
            raise InputError(
                f"the data has {len(class_names)} classes ({', '.join(class_names)}) "
                f"but the model outputs {num_classes} logits"
            )
        if len(np.unique(labels)) < 2:
            warnings.append("the data set holds a single class: accuracy says nothing about the other classes")

    names = config.attacks or list(_default_battery(registry, task))
    attacks = []
    for name in names:
        attack = registry.get("attacks", name)
        if task not in attack.tasks:
            raise UsageError(f"attack '{name}' does not support {task} models")
        attacks.append(attack)
    attacks.sort(key=lambda a: (a.cost, a.name))
    eps_255 = sorted(config.eps_255 or list(modality.eps_255))

    dummy_ctx = AttackContext(
        model=model.module, device=device, num_classes=num_classes, input_shape=input_shape,
        task=task, seed=config.seed, batch_size=config.batch_size, counter=PassCounter(),
    )
    params = {}
    for attack in attacks:
        backend = config.backends.get(attack.name, attack.default_backend)
        if backend not in attack.backends:
            raise UsageError(f"attack '{attack.name}' has no '{backend}' backend ({', '.join(attack.backends)})")
        params[attack.name] = {**attack.parameters(config.budget, dummy_ctx), "backend": backend}
    from auditor.defenses import attach_defense

    defense = attach_defense(config, registry, model, task)  # the audit then predicts through it
    return Prepared(
        config=config, model=model, dataset=dataset, modality=modality, task=task,
        num_classes=num_classes, class_names=class_names, input_shape=input_shape, device=device,
        attacks=attacks, params=params, eps_255=eps_255, warnings=warnings, probe=probe, registry=registry,
        defense=defense,
    )


def _default_battery(registry: Registry, task: str) -> list[str]:
    if task == "classification":
        from plugins.attacks import DEFAULT_BATTERY

        return [n for n in DEFAULT_BATTERY if n in registry.attacks]
    return [n for n, a in registry.attacks.items() if task in a.tasks and getattr(a, "default", True)]


class ClassificationAudit:
    """Runs one prepared classification audit, writing results.json after every step."""

    def __init__(self, prep: Prepared, progress: Progress | None = None, command: str | None = None) -> None:
        self.prep = prep
        self.config = prep.config
        self.progress = progress or Progress()
        self.command = command or " ".join(shlex.quote(a) for a in sys.argv)
        self.counter = PassCounter()
        from auditor.defenses import attack_surface

        self.model = CountingModel(attack_surface(prep), self.counter).eval()
        self.cache = SampleCache(prep.dataset)
        self.ctx = AttackContext(
            model=self.model, device=prep.device, num_classes=prep.num_classes,
            input_shape=prep.input_shape, task=prep.task, seed=self.config.seed,
            batch_size=self.config.batch_size, counter=self.counter,
        )
        self.n = len(prep.dataset)
        self.labels = np.asarray(prep.dataset.targets(), dtype=np.int64)

    # ------------------------------------------------------------------ helpers
    def _chunks(self, indices: np.ndarray) -> list[np.ndarray]:
        bs = self.config.batch_size
        return [indices[i : i + bs] for i in range(0, len(indices), bs)]

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
            for chunk_no, chunk in enumerate(self._chunks(candidates)):
                x, y, _ = self._batch(chunk)
                seed = step_seed(self.config.seed, attack.name, eps_255, chunk_no)
                result, x_adv, outside, seconds = attack_chunk(attack, self.ctx, x, y, eps, params, seed)
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
        from auditor.clinical import resolve_positive_class
        from auditor.gates import parse_criteria, validate_criteria

        prep = self.prep
        positive = resolve_positive_class(self.config.positive_class, prep.class_names,
                                          prep.modality.positive_class, prep.modality.name)
        criteria = parse_criteria(self.config.fail_under)
        validate_criteria(criteria, eps_255=prep.eps_255, attacks=[a.name for a in prep.attacks],
                          positive=positive["name"], binary=prep.num_classes == 2)
        return positive, criteria

    def _validity_and_clinical(self, results: dict[str, Any], positive: dict[str, Any]) -> None:
        """Validity checks, targeted attacks and clinical metrics, after the attack steps."""
        from auditor.checks import run_checks, skipped_checks
        from auditor.clinical import clinical_metrics, run_targeted

        if self.config.checks:
            with self.progress.task("validity checks", 10) as task:
                results["checks"] = run_checks(self, results, self.config.check_samples, task)
        else:
            results["checks"] = skipped_checks("turned off (--skip-checks)")
        write_results(Path(self.config.out), results)
        targeted, scores = None, None
        if positive["index"] is not None:
            with self.progress.task("targeted attacks (clinical directions)", None):
                targeted, scores = run_targeted(self, positive, results)
        results["targeted"] = targeted
        results["clinical"] = clinical_metrics(results, positive, scores)
        if scores:
            results["samples"]["adversarial_positive_scores"] = {
                f"{eps:g}": np.round(values, 6).tolist() for eps, values in scores.items()}

    def run(self) -> dict[str, Any]:
        prep, config = self.prep, self.config
        out = Path(config.out)
        cfg_hash = config_hash(config.identity(), prep.model.sha256, prep.dataset.fingerprint())
        positive, criteria = self._positive_and_criteria()  # fail fast, before any attack
        results = self.base_results(cfg_hash)
        done, self.gallery = resume_state(config.resume, out, cfg_hash, results, self.progress)
        results["clean"] = self.clean_pass()
        results["samples"] = {
            "ids": self.ids, "labels": self.labels.tolist(), "clean_pred": self.clean_pred.tolist(),
            "clean_confidence": self.clean_conf.tolist(), "clean_probs": self.clean_probs.round(6).tolist(),
        }
        sample_x = self._batch(np.arange(min(self.n, config.batch_size)))[0]
        self.pass_timer = PassTimer(prep.model.module, sample_x)
        results["timing"] = {"one_pass": time_one_pass(prep.model.module, sample_x)}
        write_results(out, results)

        broken_before = np.zeros(self.n, dtype=bool)  # cascade: broken at a smaller eps
        entries: list[dict[str, Any]] = []
        for eps_255 in prep.eps_255:
            broken_now = broken_before.copy()
            for attack in prep.attacks:
                key = (attack.name, float(eps_255))
                if key in done:
                    entry = done[key]
                else:
                    if config.mode == "cascade":
                        candidates = np.nonzero(self.correct & ~broken_now)[0]
                    else:
                        candidates = np.nonzero(self.correct)[0]
                    entry = self.run_step(attack, eps_255, candidates)
                for i in entry["samples"]["broken"]:
                    broken_now[i] = True
                robust = self.correct & ~broken_now if config.mode == "cascade" else (
                    self.correct & ~np.isin(np.arange(self.n), entry["samples"]["broken"])
                )
                k = int(robust.sum())
                entry["robust_accuracy"] = k / self.n
                entry["ci95"] = list(proportion_ci(k, self.n))
                entry["ci_method"] = "wilson"
                entry["mode"] = config.mode
                entries.append(entry)
                results["attacks"] = entries
                results["worst_case"] = self.worst_case(entries)
                results["gallery"] = self.gallery
                results["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                write_results(out, results)
            broken_before = broken_now if config.mode == "cascade" else broken_before
        results.update(defense_results(self, results))  # non-adaptive numbers and baseline of a --defense
        if config.detector_fit is not None and results.get("detection") is None:
            from auditor.detection import detection_for_audit

            results["detection"] = detection_for_audit(self)
            write_results(out, results)
        self._validity_and_clinical(results, positive)
        write_results(out, results)
        results["summary"] = summarise(results)
        results["gates"] = evaluate_gates(criteria, results)
        results["status"] = "complete"
        write_results(out, results)
        if config.junit and results["gates"]:
            write_junit(results["gates"], Path(config.junit), model=results["model"]["name"])
        return results


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Headline facts for the executive summary, computed here so reporters only render."""
    clean_block = results["clean"]
    clean = clean_block["accuracy"]
    worst = results["worst_case"]
    halving = next((w["eps_255"] for w in worst if w["robust_accuracy"] <= clean / 2), None)
    mode = results["config"]["mode"]
    if mode == "independent":
        at_max = [a for a in results["attacks"] if worst and a["eps_255"] == worst[-1]["eps_255"]]
        best = min(at_max, key=lambda a: a["robust_accuracy"], default=None)
        most_effective = {"attack": best["attack"] if best else None,
                          "basis": "lowest robust accuracy at the largest eps, each attack run on every sample"}
    else:
        totals = dict(worst[-1]["broken_by"]) if worst else {}
        top = max(totals, key=totals.get) if totals else None
        most_effective = {"attack": top, "basis": "cascade: broke the most samples at the largest eps, "
                          "attacks run cheap to expensive on the samples still robust"}
    positive = (results.get("clinical") or {}).get("positive_class") or results["modality"].get("positive_class")
    class_names = results["model"]["class_names"]
    focus = positive if positive in class_names else None
    affected = []
    for w in worst:
        per_class = w["per_class"]
        if not per_class:
            continue
        name = focus or min(per_class, key=lambda c: per_class[c]["accuracy"])
        if name in per_class:
            clean_acc = clean_block["per_class"].get(name, {}).get("accuracy")
            flips = [f for f in w["flips"] if f["from"] == name]
            n_class = per_class[name]["n"]
            affected.append({
                "eps_255": w["eps_255"], "class": name, "accuracy": per_class[name]["accuracy"],
                "clean_accuracy": clean_acc,
                "misreported_fraction": (n_class - round(per_class[name]["accuracy"] * n_class)) / n_class,
                "flipped_to": max(flips, key=lambda f: f["count"])["to"] if flips else None,
            })
    return {
        "clean_accuracy": clean,
        "worst_case": {f"{w['eps_255']:g}": w["robust_accuracy"] for w in worst},
        "eps_255_halving": halving,
        "most_effective_attack": most_effective,
        "focus_class": focus,
        "class_impact": affected,
    }

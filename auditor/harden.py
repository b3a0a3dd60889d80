"""Adversarial training (``medaudit harden``): fine-tune a model so the audit finds less.

Methods:

* ``pgd-at``: PGD adversarial training (Madry et al., "Towards Deep Learning Models
  Resistant to Adversarial Attacks", ICLR 2018): every batch is replaced by its PGD
  adversarial examples (L-inf, uniform random start, ``steps`` steps of ``step_size``,
  default 2.5 * eps / steps) and the model is trained on those. Classification: the inner
  loss is cross-entropy, the outer loss class-weighted cross-entropy. Segmentation: the
  inner loss is BCE or soft Dice (``inner_loss``, see :mod:`plugins.attacks.seg_losses`),
  the outer loss BCE + soft Dice.
* ``trades`` (classification): Zhang et al., "Theoretically Principled Trade-off between
  Robustness and Accuracy", ICML 2019: cross-entropy on the clean batch plus ``beta``
  (default 6) times the KL divergence between the clean and the adversarial predictions,
  the adversarial example maximising that KL (start at x + 0.001 N(0, I)).

The model given is the starting point (adversarial fine-tuning): it is loaded exactly as
``medaudit run`` loads it, trained with Adam, and saved as TorchScript in the same
contract (images in [0,1] in, logits out; with ``--mean/--std`` the saved model again
expects normalised input). Adversarial examples are generated with the model in eval
mode (BatchNorm statistics frozen, as deployed); the update runs in train mode.

Every epoch is evaluated on a held-out split that training never sees (``val_split`` of
the data, else a seeded, stratified ``val_fraction`` of it): clean accuracy and PGD
accuracy at eps (``eval_steps`` steps of eps/4; for segmentation mean Dice, clean and
under PGD with the Dice loss). The log (``<out>.harden.json``) holds the settings, the
held-out numbers before training and after each epoch, and the evidence the report
cites ("PGD-AT at 4/255 measured: ...").
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from auditor.errors import InputError, UsageError
from auditor.progress import Progress

METHODS = ("pgd-at", "trades")
INNER_LOSSES = ("bce", "dice")
LOG_SUFFIX = ".harden.json"


@dataclass
class HardenConfig:
    model: Path
    data: Path
    out: Path
    method: str = "pgd-at"
    task: str | None = None  # default: detected from the model's output
    eps_255: float = 4.0
    epochs: int = 5
    steps: int = 7
    step_size_255: float | None = None  # default 2.5 * eps / steps
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    trades_beta: float = 6.0
    inner_loss: str = "bce"  # segmentation PGD-AT
    class_weights: bool = True  # balance classes in the outer loss (classification)
    split: str | None = None
    val_split: str | None = None
    val_fraction: float = 0.1
    eval_steps: int = 10
    modality: str = "dermoscopy"
    input_size: tuple[int, int] | None = None
    channels: int | None = None
    classes: list[str] | None = None
    data_format: str | None = None
    model_format: str | None = None
    arch: str | None = None
    trust_model: bool = False
    mean: list[float] | None = None
    std: list[float] | None = None
    limit: int | None = None
    seed: int = 0
    device: str = "auto"
    follow_symlinks: bool = False  # read data files whose real path leaves --data
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"--method: '{self.method}' is not {' or '.join(METHODS)}")
        if self.inner_loss not in INNER_LOSSES:
            raise UsageError(f"--inner-loss: '{self.inner_loss}' is not bce or dice")
        if self.task not in (None, "classification", "segmentation"):
            raise UsageError(f"--task: '{self.task}' is not classification or segmentation")
        if not (math.isfinite(self.eps_255) and 0 < self.eps_255 <= 255):
            raise UsageError("--eps must be a positive number of /255 units, at most 255")
        for name, value in (("--epochs", self.epochs), ("--steps", self.steps), ("--batch-size", self.batch_size),
                            ("--eval-steps", self.eval_steps)):
            if value < 1:
                raise UsageError(f"{name} must be at least 1")
        if self.step_size_255 is not None and not self.step_size_255 > 0:
            raise UsageError("--step-size must be positive (in /255 units)")
        if not self.lr > 0:
            raise UsageError("--lr must be positive")
        if not 0 < self.val_fraction < 1:
            raise UsageError("--val-fraction must be between 0 and 1")
        if self.trades_beta < 0:
            raise UsageError("--trades-beta must not be negative")

    @property
    def eps(self) -> float:
        return self.eps_255 / 255.0

    @property
    def step_size(self) -> float:
        if self.step_size_255 is not None:
            return self.step_size_255 / 255.0
        return 2.5 * self.eps / self.steps


# --------------------------------------------------------------------------- attacks
def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0.0, 1.0)


def _seg_loss(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    from plugins.attacks.seg_losses import seg_objective

    return seg_objective(logits, target, loss)


def pgd_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
                 loss: str, gen: torch.Generator | None, random_start: bool = True) -> torch.Tensor:
    """L-inf PGD maximising ``loss`` ("ce" for classification, "bce"/"dice" for
    segmentation), from a uniform random start in the ball (or from ``x``)."""
    if random_start:
        noise = (torch.rand(x.shape, generator=gen, device=x.device) * 2 - 1) * eps
        x_adv = _project(x + noise, x, eps)
    else:
        x_adv = x.clone()
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        value = F.cross_entropy(logits, y, reduction="sum") if loss == "ce" else _seg_loss(logits, y, loss).sum()
        (grad,) = torch.autograd.grad(value, x_adv)
        x_adv = _project(x_adv.detach() + alpha * grad.sign(), x, eps)
    return x_adv.detach()


def trades_examples(model: nn.Module, x: torch.Tensor, eps: float, alpha: float, steps: int,
                    gen: torch.Generator | None) -> torch.Tensor:
    """The TRADES inner maximisation: KL(p(x) || p(x')) over the L-inf ball."""
    with torch.no_grad():
        p_clean = F.softmax(model(x), dim=1)
    x_adv = _project(x + 0.001 * torch.randn(x.shape, generator=gen, device=x.device), x, eps)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
        (grad,) = torch.autograd.grad(kl, x_adv)
        x_adv = _project(x_adv.detach() + alpha * grad.sign(), x, eps)
    return x_adv.detach()


# ------------------------------------------------------------------------ evaluation
def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, eps: float, steps: int,
             batch_size: int, num_classes: int, seed: int = 0) -> dict[str, Any]:
    """Held-out numbers: clean and PGD (``steps`` of eps/4 from the clean image, CE loss;
    Dice loss for segmentation) accuracy or mean Dice."""
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    clean_pred, adv_pred, clean_dice, adv_dice = [], [], [], []
    for s in _batches(len(x), batch_size):
        xb, yb = x[s], y[s]
        loss = "ce" if task == "classification" else "dice"
        x_adv = pgd_examples(model, xb, yb, eps, eps / 4, steps, loss, gen, random_start=False)
        with torch.no_grad():
            if task == "classification":
                clean_pred.append(model(xb).argmax(1))
                adv_pred.append(model(x_adv).argmax(1))
            else:
                clean_dice.append(_dice(model(xb), yb))
                adv_dice.append(_dice(model(x_adv), yb))
    out: dict[str, Any] = {"n": int(len(x)), "eps_255": eps * 255, "pgd": {"steps": steps, "step_size_eps_fraction": 0.25,
                                                                         "random_start": False}}
    if task == "classification":
        cp, ap = torch.cat(clean_pred).cpu().numpy(), torch.cat(adv_pred).cpu().numpy()
        labels = y.cpu().numpy()
        out.update(_accuracy_facts(cp, labels, num_classes, "clean"))
        out.update(_accuracy_facts(ap, labels, num_classes, "pgd"))
    else:
        out["clean_dice"] = float(torch.cat(clean_dice).mean())
        out["pgd_dice"] = float(torch.cat(adv_dice).mean())
    return out


def _dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from plugins.metrics import compute_dice

    k = logits.shape[1]
    pred = (logits[:, 0] >= 0).long() if k == 1 else logits.argmax(1)
    roi = target >= 0 if bool((target < 0).any()) else None
    return compute_dice(pred, target.clamp(min=0), roi, max(k, 2))


def _accuracy_facts(pred: np.ndarray, labels: np.ndarray, num_classes: int, prefix: str) -> dict[str, Any]:
    correct = pred == labels
    per_class = {str(c): float(correct[labels == c].mean()) for c in range(num_classes) if (labels == c).any()}
    return {f"{prefix}_accuracy": float(correct.mean()),
            f"{prefix}_balanced_accuracy": float(np.mean(list(per_class.values()))) if per_class else None,
            f"{prefix}_per_class_accuracy": per_class}


# -------------------------------------------------------------------------- the run
def _holdout(labels: np.ndarray, fraction: float, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(labels)
    if not stratify:
        order = rng.permutation(n)
        k = max(1, int(round(n * fraction)))
        return np.sort(order[k:]), np.sort(order[:k])
    held = []
    for c in np.unique(labels):
        members = np.nonzero(labels == c)[0]
        k = int(round(len(members) * fraction))
        if k:
            held.extend(rng.choice(members, size=k, replace=False).tolist())
    held_idx = np.sort(np.asarray(held, dtype=np.int64))
    return np.setdiff1d(np.arange(n), held_idx), held_idx


def _load_all(dataset: Any, indices: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    idx = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    images, targets = [], []
    for start in range(0, len(idx), 256):
        batch = dataset.load(idx[start : start + 256])
        images.append(batch.images)
        target = batch.targets
        if batch.roi is not None:  # pixels outside the region of interest take no part in any loss
            target = target.masked_fill(~batch.roi.bool(), -1)
        targets.append(target)
    return torch.cat(images), torch.cat(targets)


def _script(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    if isinstance(module, torch.jit.ScriptModule):
        return module
    try:
        return torch.jit.script(module)
    except Exception:  # noqa: BLE001 - modules scripting cannot handle are traced instead
        with torch.no_grad():
            return torch.jit.trace(module, example)


def log_path_for(model_out: Path) -> Path:
    """Where the training log of a hardened model lives: ``hardened.pt`` -> ``hardened.harden.json``."""
    return model_out.with_name(model_out.stem + LOG_SUFFIX)


def harden(config: HardenConfig, registry: Any, progress: Progress | None = None) -> dict[str, Any]:
    """Adversarially fine-tune ``config.model`` on ``config.data``; save the TorchScript
    model to ``config.out`` and the log next to it. Returns the log."""
    from auditor.config import resolve_device
    from auditor.datasets import open_dataset
    from auditor.interfaces import DataOptions
    from auditor.models import NormalizedModel, SingleLogitAsTwoClasses, infer_input_channels, open_model, probe_model

    config.check()
    progress = progress or Progress()
    device = resolve_device(config.device)
    modality = registry.get("modalities", config.modality)
    out = Path(config.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder of {out}: {exc.strerror or exc}") from None
    torch.manual_seed(config.seed)
    with progress.task("loading model", None):
        loaded = open_model(registry, config.model, format=config.model_format, arch=config.arch,
                            trust_model=config.trust_model, device=str(device), mean=config.mean, std=config.std)
    module = loaded.module
    channels = config.channels or infer_input_channels(module) or modality.channels
    size = config.input_size or modality.input_size
    probe = probe_model(module, (channels, size[0], size[1]), device)
    task = config.task or probe.task
    if task == "segmentation" and config.method == "trades":
        raise UsageError("--method trades is for classification; use pgd-at with --inner-loss bce|dice")
    train_module = SingleLogitAsTwoClasses(module) if task == "classification" and probe.binary else module
    if probe.looks_like_probabilities:
        raise InputError("the model outputs probabilities, not logits; harden the model without its final softmax")

    with progress.task("loading data", None):
        options = DataOptions(channels=channels, input_size=size, split=config.split, classes=config.classes,
                              limit=config.limit, seed=config.seed, task=task,
                              follow_symlinks=config.follow_symlinks)
        dataset = open_dataset(registry, config.data, options, source=config.data_format)
        labels = np.asarray(dataset.targets(), dtype=np.int64)
        if config.val_split:
            val_set = open_dataset(registry, config.data, DataOptions(
                channels=channels, input_size=size, split=config.val_split, classes=config.classes,
                seed=config.seed, task=task, follow_symlinks=config.follow_symlinks), source=config.data_format)
            train_idx, holdout = np.arange(len(dataset)), None
        else:
            train_idx, held_idx = _holdout(labels, config.val_fraction, config.seed, task == "classification")
            holdout = held_idx
        x_train, y_train = _load_all(dataset, train_idx)
        x_val, y_val = _load_all(val_set) if config.val_split else _load_all(dataset, holdout)
    if len(x_train) == 0 or len(x_val) == 0:
        raise InputError("not enough data for a training set and a held-out set")
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))
    num_classes = probe.num_classes
    if task == "classification" and int(y_train.max()) >= num_classes:
        raise InputError(f"label {int(y_train.max())} is outside the model's {num_classes} classes")

    for param in train_module.parameters():
        param.requires_grad_(True)
    weights = None
    if task == "classification" and config.class_weights:
        counts = torch.bincount(y_train, minlength=num_classes).float()
        weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    optimizer = torch.optim.Adam([p for p in train_module.parameters() if p.requires_grad], lr=config.lr,
                                 weight_decay=config.weight_decay)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    order_gen = torch.Generator().manual_seed(config.seed)
    eval_args = dict(task=task, eps=config.eps, steps=config.eval_steps, batch_size=max(config.batch_size, 64),
                     num_classes=num_classes, seed=config.seed)

    settings = {k: v for k, v in asdict(config).items() if k not in ("extra",)}
    settings.update({"step_size_255": config.step_size * 255, "task": task, "device": str(device)})
    log: dict[str, Any] = {
        "tool": "medaudit harden", "method": config.method, "task": task,
        "model_in": {"path": str(loaded.path), "sha256": loaded.sha256, "format": loaded.format},
        "settings": json.loads(json.dumps(settings, default=str)),
        "data": {"source": str(config.data), "split": config.split, "n_train": int(len(x_train)),
                 "n_heldout": int(len(x_val)),
                 "heldout": f"split '{config.val_split}'" if config.val_split else
                 f"seeded {'stratified ' if task == 'classification' else ''}{config.val_fraction:.0%} of the training data"},
        "class_weights": weights.tolist() if weights is not None else None,
        "epochs": [],
    }
    with progress.task("held-out evaluation (before)", None):
        log["before"] = evaluate(train_module, x_val, y_val, **eval_args)
    t_start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        total, seen = 0.0, 0
        order = torch.randperm(len(x_train), generator=order_gen).to(device)
        with progress.task(f"{config.method} epoch {epoch}/{config.epochs}", len(x_train)) as bar:
            for s in _batches(len(x_train), config.batch_size):
                idx = order[s]
                x, y = x_train[idx], y_train[idx]
                loss = _train_step(train_module, optimizer, x, y, task, config, gen, weights)
                total += loss * len(idx)
                seen += len(idx)
                bar.advance(len(idx))
        train_s = time.perf_counter() - t0
        with progress.task(f"held-out evaluation (epoch {epoch})", None):
            row = evaluate(train_module, x_val, y_val, **eval_args)
        row.update({"epoch": epoch, "loss": total / max(seen, 1), "train_s": train_s})
        log["epochs"].append(row)
    train_module.eval()
    for param in train_module.parameters():
        param.requires_grad_(False)
    log["after"] = {k: v for k, v in log["epochs"][-1].items() if k not in ("epoch", "loss", "train_s")}
    log["train_s"] = time.perf_counter() - t_start

    to_save = module.model if isinstance(module, NormalizedModel) else module
    example = x_val[:2]
    if isinstance(module, NormalizedModel):
        example = (example - module.mean) / module.std
    scripted = _script(to_save.eval(), example)
    try:
        scripted.save(str(out))
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
    log["model_out"] = {"path": str(out), "format": "torchscript"}
    log["evidence"] = evidence_from_log(log)
    log_path_for(out).write_text(json.dumps(log, indent=1))
    return log


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, task: str,
                config: HardenConfig, gen: torch.Generator, weights: torch.Tensor | None) -> float:
    model.eval()
    if config.method == "trades":
        x_adv = trades_examples(model, x, config.eps, config.step_size, config.steps, gen)
    else:
        loss_name = "ce" if task == "classification" else config.inner_loss
        x_adv = pgd_examples(model, x, y, config.eps, config.step_size, config.steps, loss_name, gen)
    model.train()
    optimizer.zero_grad()
    if task == "segmentation":
        logits = model(x_adv)
        loss = (_seg_loss(logits, y, "bce") + _seg_loss(logits, y, "dice")).mean()
    elif config.method == "trades":
        logits_clean = model(x)
        kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits_clean, dim=1), reduction="batchmean")
        loss = F.cross_entropy(logits_clean, y, weight=weights) + config.trades_beta * kl
    else:
        loss = F.cross_entropy(model(x_adv), y, weight=weights)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


# -------------------------------------------------------------------------- evidence
def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _method_title(method: str, eps_255: float) -> str:
    return f"{'PGD-AT' if method == 'pgd-at' else 'TRADES'} at {eps_255:g}/255"


def evidence_from_log(log: dict[str, Any]) -> dict[str, Any]:
    """A ``results["defenses"]`` entry from a harden log: held-out numbers before and after."""
    eps = float(log["settings"]["eps_255"])
    before, after = log["before"], log["after"]
    title = _method_title(log["method"], eps)
    n = after.get("n")
    if log["task"] == "classification":
        message = (f"{title} measured during hardening on {n} held-out images: PGD accuracy at {eps:g}/255 from "
                   f"{_pct(before['pgd_accuracy'])} to {_pct(after['pgd_accuracy'])}, clean accuracy "
                   f"{_pct(before['clean_accuracy'])} -> {_pct(after['clean_accuracy'])}")
        if before.get("pgd_balanced_accuracy") is not None and after.get("pgd_balanced_accuracy") is not None:
            # accuracy alone rewards a drift towards the majority class; the balanced figure does not
            message += (f" (mean over classes: PGD {_pct(before['pgd_balanced_accuracy'])} -> "
                        f"{_pct(after['pgd_balanced_accuracy'])}, clean {_pct(before['clean_balanced_accuracy'])} -> "
                        f"{_pct(after['clean_balanced_accuracy'])})")
        clean_b, clean_a, rob_b, rob_a = (before["clean_accuracy"], after["clean_accuracy"],
                                          before["pgd_accuracy"], after["pgd_accuracy"])
    else:
        message = (f"{title} ({log['settings']['inner_loss']} inner loss) measured during hardening on {n} held-out "
                   f"images: Dice under PGD-Dice at {eps:g}/255 from {before['pgd_dice']:.2f} to "
                   f"{after['pgd_dice']:.2f}, clean Dice {before['clean_dice']:.2f} -> {after['clean_dice']:.2f}")
        clean_b, clean_a, rob_b, rob_a = before["clean_dice"], after["clean_dice"], before["pgd_dice"], after["pgd_dice"]
    metric = "accuracy" if log["task"] == "classification" else "dice"
    return {
        "name": log["method"], "title": title, "family": "training", "source": "harden log (held-out split)",
        "metric": metric, "numbers": "pgd",
        "clean_accuracy": clean_a if metric == "accuracy" else None,
        "worst_case": [{"eps_255": eps, "robust_accuracy": rob_a}] if metric == "accuracy" else [],
        "baseline": ({"clean_accuracy": clean_b, "worst_case": [{"eps_255": eps, "robust_accuracy": rob_b}]}
                     if metric == "accuracy" else None),
        "before": {"clean": clean_b, "robust": {f"{eps:g}": rob_b}},
        "after": {"clean": clean_a, "robust": {f"{eps:g}": rob_a}},
        "message": message,
    }


def evidence_from_audits(before: dict[str, Any], after: dict[str, Any], log: dict[str, Any] | None = None,
                         eps_255: float | None = None) -> dict[str, Any]:
    """A ``results["defenses"]`` entry from two audits of the same data: the model before
    and after hardening ("PGD-AT at 4/255 measured: worst-case accuracy at 4/255 from 3% to
    41%, clean accuracy 78% -> 70%"; for segmentation, worst-case Dice)."""
    segmentation = (before.get("config") or {}).get("task") == "segmentation"
    key = "dice" if segmentation else "robust_accuracy"
    wb = {float(w["eps_255"]): w.get(key) for w in before.get("worst_case") or []}
    wa = {float(w["eps_255"]): w.get(key) for w in after.get("worst_case") or []}
    common = sorted(set(wb) & set(wa))
    if not common:
        raise InputError("the two audits share no eps: nothing to compare")
    method = (log or {}).get("method", "hardening")
    trained_eps = float((log or {}).get("settings", {}).get("eps_255", eps_255 or common[0]))
    at = eps_255 if eps_255 is not None else min(common, key=lambda e: abs(e - trained_eps))
    title = _method_title(method, trained_eps) if log else "Hardened model"
    clean_key = "dice" if segmentation else "accuracy"
    cb, ca = (before.get("clean") or {}).get(clean_key), (after.get("clean") or {}).get(clean_key)
    if segmentation:
        fmt = (lambda v: "n/a" if v is None else f"{v:.2f}")
        message = (f"{title} measured: worst-case Dice at {at:g}/255 from {fmt(wb[at])} to {fmt(wa[at])}, "
                   f"clean Dice {fmt(cb)} -> {fmt(ca)}")
    else:
        message = (f"{title} measured: worst-case accuracy at {at:g}/255 from {_pct(wb[at])} to {_pct(wa[at])}, "
                   f"clean accuracy {_pct(cb)} -> {_pct(ca)}")
        balanced_b, balanced_a = _balanced_worst(before, at), _balanced_worst(after, at)
        if balanced_b is not None and balanced_a is not None:
            # accuracy alone rewards a drift towards the majority class; the balanced figure does not
            message += f" (mean over classes at {at:g}/255: {_pct(balanced_b)} -> {_pct(balanced_a)})"
    metric = "dice" if segmentation else "accuracy"
    return {
        "name": method, "title": title, "family": "training", "source": "two audits (before/after)",
        "metric": metric, "numbers": "worst case over the audit's attacks",
        "clean_accuracy": None if segmentation else ca,
        "worst_case": [] if segmentation else [{"eps_255": e, "robust_accuracy": wa[e]} for e in common],
        "baseline": None if segmentation else {
            "clean_accuracy": cb, "worst_case": [{"eps_255": e, "robust_accuracy": wb[e]} for e in common]},
        "before": {"clean": cb, "robust": {f"{e:g}": wb[e] for e in common}},
        "after": {"clean": ca, "robust": {f"{e:g}": wa[e] for e in common}},
        "message": message,
    }


def _balanced_worst(results: dict[str, Any], eps_255: float) -> float | None:
    for w in results.get("worst_case") or []:
        if float(w["eps_255"]) == eps_255 and w.get("per_class"):
            values = [c["accuracy"] for c in w["per_class"].values()]
            return sum(values) / len(values)
    return None

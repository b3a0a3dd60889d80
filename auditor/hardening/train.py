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
* ``block-switching`` and ``feature-denoising`` change the network: see
  :mod:`auditor.hardening.structure`.

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

from auditor.accounting import PassCounter
from auditor.config import resolve_device
from auditor.datasets import open_dataset
from auditor.errors import InputError, UsageError
from auditor.hardening.evidence import evidence_from_log, log_path_for
from auditor.hardening.structure import insert_denoising_blocks, train_block_switching
from auditor.interfaces import AttackContext, DataOptions
from auditor.models import NormalizedModel, SingleLogitAsTwoClasses, infer_input_channels, open_model, probe_model
from auditor.numerics import IGNORE_INDEX, seg_objective
from auditor.progress import Progress
from auditor.steps import attack_chunk

METHODS = ("pgd-at", "trades", "block-switching", "feature-denoising")  # the last two: auditor.hardening.structure
INNER_LOSSES = ("bce", "dice")


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
    channel_order: tuple[int, ...] | None = None  # --preprocess caffe: the model reads BGR
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
def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, attack: str,
                         params: dict[str, Any], gen: torch.Generator | None, registry: Any) -> torch.Tensor:
    """The training attack ``attack`` (``pgd-training`` or ``trades-training``) on one batch,
    through the engine's step routine; its random starts are drawn from ``gen`` (one
    generator for the whole run, so a training run is reproducible from its seed)."""
    counter = PassCounter()
    ctx = AttackContext(model=model, device=x.device, num_classes=0, input_shape=tuple(x.shape[1:]),
                        task="classification" if y.dim() == 1 else "segmentation", seed=0, batch_size=len(x),
                        counter=counter)
    return attack_chunk(registry.get("attacks", attack), ctx, x, y, eps, {**params, "generator": gen}, None)[1]


# ------------------------------------------------------------------------ evaluation
def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, eps: float, steps: int,
             batch_size: int, num_classes: int, registry: Any, seed: int = 0) -> dict[str, Any]:
    """Held-out numbers: clean and PGD (``steps`` of eps/4 from the clean image, CE loss;
    Dice loss for segmentation) accuracy or mean Dice."""
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    clean_pred, adv_pred, clean_dice, adv_dice = [], [], [], []
    for s in _batches(len(x), batch_size):
        xb, yb = x[s], y[s]
        loss = "ce" if task == "classification" else "dice"
        params = {"steps": steps, "step_size": eps / 4, "loss": loss, "random_start": False}
        x_adv = adversarial_examples(model, xb, yb, eps, "pgd-training", params, gen, registry)
        with torch.no_grad():
            if task == "classification":
                clean_pred.append(model(xb).argmax(1))
                adv_pred.append(model(x_adv).argmax(1))
            else:
                clean_dice.append(_dice(registry, model(xb), yb))
                adv_dice.append(_dice(registry, model(x_adv), yb))
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


def _dice(registry: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image Dice from the registry's metric; pixels marked IGNORE_INDEX are outside the ROI."""
    roi = target != IGNORE_INDEX if bool((target == IGNORE_INDEX).any()) else None
    return registry.get("metrics", "dice").compute(logits, target.clamp(min=0), roi)


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
    if not idx:  # too few images for a held-out share: the caller says so
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    images, targets = [], []
    for start in range(0, len(idx), 256):
        batch = dataset.load(idx[start : start + 256])
        images.append(batch.images)
        target = batch.targets
        if batch.roi is not None:  # pixels outside the region of interest take no part in any loss
            target = target.masked_fill(~batch.roi.bool(), IGNORE_INDEX)
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


def harden(config: HardenConfig, registry: Any, progress: Progress | None = None) -> dict[str, Any]:
    """Adversarially fine-tune ``config.model`` on ``config.data``; save the TorchScript
    model to ``config.out`` and the log next to it. Returns the log."""

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
                            trust_model=config.trust_model, device=str(device), mean=config.mean, std=config.std,
                            channel_order=config.channel_order)
    module = loaded.module
    channels = config.channels or infer_input_channels(module) or modality.channels
    size = config.input_size or modality.input_size
    probe = probe_model(module, (channels, size[0], size[1]), device)
    task = config.task or probe.task
    if task == "segmentation" and config.method not in ("pgd-at",):
        raise UsageError(f"--method {config.method} is for classification; use pgd-at with --inner-loss bce|dice")
    if config.method == "feature-denoising":  # then PGD-AT, as Xie et al. train them
        config.extra["denoised_layers"] = insert_denoising_blocks(module, int(config.extra.get("denoise_blocks", 2)))
    train_module = SingleLogitAsTwoClasses(module) if task == "classification" and probe.binary else module
    if probe.looks_like_probabilities:
        raise InputError("the model outputs probabilities, not logits; harden the model without its final softmax")

    x_train, y_train, x_val, y_val = _training_data(config, registry, channels, size, task, progress)
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))
    num_classes = probe.num_classes
    if task == "classification" and int(y_train.max()) >= num_classes:
        raise InputError(f"label {int(y_train.max())} is outside the model's {num_classes} classes")

    weights = None
    if task == "classification" and config.class_weights:
        counts = torch.bincount(y_train, minlength=num_classes).float()
        weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    eval_args = dict(task=task, eps=config.eps, steps=config.eval_steps, batch_size=max(config.batch_size, 64),
                     num_classes=num_classes, registry=registry, seed=config.seed)
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
    if config.method == "block-switching":
        wrap = SingleLogitAsTwoClasses if task == "classification" and probe.binary else (lambda net: net)
        module, log["block_switching"] = train_block_switching(module, wrap, config, (x_train, y_train), weights,
                                                               progress)
        with progress.task("held-out evaluation (after; PGD without EoT)", None):
            log["after"] = evaluate(wrap(module), x_val, y_val, **eval_args)
    else:
        _train(train_module, config, (x_train, y_train), (x_val, y_val), weights, eval_args, log, progress)
    log["structure"] = {k: v for k, v in config.extra.items() if k in ("denoised_layers", "denoise_blocks", "copies")}
    _save(module, x_val, out)
    log["model_out"] = {"path": str(out), "format": "torchscript"}
    log["evidence"] = evidence_from_log(log)
    log_path_for(out).write_text(json.dumps(log, indent=1))
    return log


def _training_data(config: HardenConfig, registry: Any, channels: int, size: tuple[int, int], task: str,
                   progress: Progress) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training and held-out images and labels (``--val-split``, else a seeded held-out share)."""
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
    return x_train, y_train, x_val, y_val


def _train(train_module: nn.Module, config: HardenConfig, train: tuple[torch.Tensor, torch.Tensor],
           val: tuple[torch.Tensor, torch.Tensor], weights: torch.Tensor | None, eval_args: dict[str, Any],
           log: dict[str, Any], progress: Progress) -> None:
    """The epochs: adversarial examples, one optimiser step per batch, a held-out row per epoch."""
    (x_train, y_train), (x_val, y_val) = train, val
    device, task, registry = x_train.device, eval_args["task"], eval_args["registry"]
    for param in train_module.parameters():
        param.requires_grad_(True)
    optimizer = torch.optim.Adam([p for p in train_module.parameters() if p.requires_grad], lr=config.lr,
                                 weight_decay=config.weight_decay)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    order_gen = torch.Generator().manual_seed(config.seed)
    t_start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        total, seen = 0.0, 0
        order = torch.randperm(len(x_train), generator=order_gen).to(device)
        with progress.task(f"{config.method} epoch {epoch}/{config.epochs}", len(x_train)) as bar:
            for s in _batches(len(x_train), config.batch_size):
                idx = order[s]
                x, y = x_train[idx], y_train[idx]
                loss = _train_step(train_module, optimizer, x, y, task, config, gen, weights, registry)
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


def _save(module: nn.Module, x_val: torch.Tensor, out: Path) -> None:
    """The hardened network as TorchScript, without medaudit's normalisation wrapper."""
    to_save = module.model if isinstance(module, NormalizedModel) else module
    example = x_val[:2]
    if isinstance(module, NormalizedModel):
        if module.channel_order is not None:
            example = example[:, module.channel_order]
        example = (example - module.mean) / module.std
    scripted = _script(to_save.eval(), example)
    try:
        scripted.save(str(out))
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, task: str,
                config: HardenConfig, gen: torch.Generator, weights: torch.Tensor | None, registry: Any) -> float:
    model.eval()
    params: dict[str, Any] = {"steps": config.steps, "step_size": config.step_size}
    if config.method == "trades":
        x_adv = adversarial_examples(model, x, y, config.eps, "trades-training", params, gen, registry)
    else:
        params.update(loss="ce" if task == "classification" else config.inner_loss, random_start=True)
        x_adv = adversarial_examples(model, x, y, config.eps, "pgd-training", params, gen, registry)
    model.train()
    optimizer.zero_grad()
    if task == "segmentation":
        logits = model(x_adv)
        loss = (seg_objective(logits, y, "bce") + seg_objective(logits, y, "dice")).mean()
    elif config.method == "trades":
        logits_clean = model(x)
        kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits_clean, dim=1), reduction="batchmean")
        loss = F.cross_entropy(logits_clean, y, weight=weights) + config.trades_beta * kl
    else:
        loss = F.cross_entropy(model(x_adv), y, weight=weights)
    loss.backward()
    optimizer.step()
    return float(loss.detach())

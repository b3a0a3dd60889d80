"""From a configuration to a prepared audit: the model loaded and probed, the data opened
and checked against it, the attacks chosen with their parameters, the defense attached.
Everything a user can get wrong fails here, before the first attack runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from auditor.accounting import PassCounter
from auditor.config import AuditConfig, resolve_device
from auditor.datasets import open_dataset
from auditor.engine.service import check_target, split_attacks
from auditor.errors import InputError, MedauditError, UsageError
from auditor.evaluation.defenses import attach_defense
from auditor.interfaces import AttackContext, DataOptions, Dataset
from auditor.models import (SingleLogitAsTwoClasses, infer_input_channels, open_model, preprocess_channel_order,
                            probe_model)
from auditor.numerics import BUDGETS, exact_gpu_arithmetic
from auditor.progress import Progress
from auditor.registry import Registry
from auditor.transfer import add_surrogate


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
    attack_extra: dict[str, Any] = field(default_factory=dict)  # AttackContext.extra (e.g. --surrogate)
    defense: Any = None  # auditor.evaluation.defenses.DefendedModels when --defense is given
    input_size_source: str = "modality"  # what decided the input size: user | model | data | modality
    # attacks a query-only target does not allow, with the reason (auditor.engine.service)
    skipped_attacks: list[dict[str, Any]] = field(default_factory=list)


def prepare(config: AuditConfig, registry: Registry, progress: Progress | None = None) -> Prepared:
    """Load and validate the model, data and attack configuration."""
    progress = progress or Progress()
    registry = registry.for_audit()  # records the components this audit uses (results' provenance)
    device = resolve_device(config.device)
    exact_gpu_arithmetic(device)  # TF32 off, deterministic cuDNN: numbers independent of the batch
    modality = registry.get("modalities", config.modality)
    _check_numbers(config)
    with progress.task("loading model", None):
        model = open_model(
            registry, config.model, format=config.model_format, arch=config.arch,
            trust_model=config.trust_model, device=str(device), mean=config.mean, std=config.std,
            channel_order=preprocess_channel_order(getattr(config, "preprocess", None)),  # --preprocess caffe: BGR
            extra={**config.service, "outputs": config.outputs, "classes": len(config.classes or []) or None,
                   "custom_objects": getattr(config, "custom_objects", None)},
        )
    declared_channels = (model.details or {}).get("input_channels")  # e.g. a Keras (N, H, W, C) input
    channels = config.channels or declared_channels or infer_input_channels(model.module) or modality.channels
    input_size, input_size_source = _input_size(config, registry, model, modality, channels)
    input_shape = (channels, input_size[0], input_size[1])
    probe = probe_model(model.module, input_shape, device)
    task = config.task or probe.task
    target = check_target(config, model, task)  # a query-only target: what it cannot take part in
    warnings = _output_warnings(config, model, probe, task)

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
        class_names = _class_names_for(dataset, num_classes, warnings)

    attacks, skipped_attacks = split_attacks(_attacks(config, registry, task), target, bool(config.attacks))
    eps_255 = sorted(config.eps_255 or list(modality.eps_255))
    dummy_ctx = AttackContext(
        model=model.module, device=device, num_classes=num_classes, input_shape=input_shape,
        task=task, seed=config.seed, batch_size=config.batch_size, counter=PassCounter(),
    )
    if config.surrogate is not None:  # transfer attacks craft on it (auditor.transfer)
        attacks = add_surrogate(config, registry, task, attacks, dummy_ctx)
    params = {}
    for attack in attacks:
        backend = config.backends.get(attack.name, attack.default_backend)
        if backend not in attack.backends:
            raise UsageError(f"attack '{attack.name}' has no '{backend}' backend ({', '.join(attack.backends)})")
        params[attack.name] = {**attack.parameters(config.budget, dummy_ctx), "backend": backend}
    defense = attach_defense(config, registry, model, task)  # the audit then predicts through it
    return Prepared(
        config=config, model=model, dataset=dataset, modality=modality, task=task, attack_extra=dummy_ctx.extra,
        num_classes=num_classes, class_names=class_names, input_shape=input_shape, device=device,
        attacks=attacks, params=params, eps_255=eps_255, warnings=warnings, probe=probe, registry=registry,
        defense=defense, input_size_source=input_size_source, skipped_attacks=skipped_attacks,
    )


def _input_size(config: AuditConfig, registry: Registry, model: Any, modality: Any,
                channels: int) -> tuple[tuple[int, int], str]:
    """The (H, W) images are audited at and what decided it: ``--input-size``; else the size
    the model file declares (it cannot take another); else the one size every image of the
    data shares; only then the modality preset. Resizing a 28x28 data set to the preset's
    64x64 for a model trained at 28x28 would silently audit a model that classifies nothing."""
    if config.input_size:
        asked = (int(config.input_size[0]), int(config.input_size[1]))
        if model.input_size and tuple(model.input_size) != asked:
            raise UsageError(f"--input-size {asked[0]}x{asked[1]} conflicts with the {model.input_size[0]}x"
                             f"{model.input_size[1]} input the model file declares; drop --input-size")
        return asked, "user"
    if model.input_size:
        return (int(model.input_size[0]), int(model.input_size[1])), "model"
    options = DataOptions(
        channels=channels, input_size=None, split=config.split, classes=config.classes, limit=config.limit,
        seed=config.seed, task=config.task or "classification", roi=config.roi,
        follow_symlinks=config.follow_symlinks,
    )
    try:
        native = open_dataset(registry, config.data, options, source=config.data_format).native_size()
    except MedauditError:
        native = None  # the data is opened again below for the probed task, which reports what is wrong
    if native:
        return (int(native[0]), int(native[1])), "data"
    return (int(modality.input_size[0]), int(modality.input_size[1])), "modality"


def _check_numbers(config: AuditConfig) -> None:
    if config.budget not in BUDGETS:
        raise UsageError(f"--budget: '{config.budget}' is not quick, standard or thorough")
    if config.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if config.limit is not None and config.limit < 1:
        raise UsageError("--limit must be at least 1")


def _output_warnings(config: AuditConfig, model: Any, probe: Any, task: str) -> list[str]:
    """A one-logit classifier becomes two classes; probabilities are refused or flagged."""
    warnings: list[str] = []
    if task == "classification" and probe.binary:
        model.module = SingleLogitAsTwoClasses(model.module)
        warnings.append("the model has one output logit; it is audited as two classes [0, z] (sigmoid)")
    if probe.looks_like_probabilities:
        message = (
            "the model's outputs look like probabilities (softmax/sigmoid at the end), not logits: "
            "gradient attacks on saturated probabilities underestimate vulnerability"
        )
        if not config.allow_probabilities:
            raise InputError(message + "; export the model without its final softmax, or pass --allow-probabilities")
        warnings.append(message)
    return warnings


def _class_names_for(dataset: Dataset, num_classes: int, warnings: list[str]) -> list[str]:
    """The data's class names, checked against the model's logits (padded with indices)."""
    class_names = list(dataset.class_names)
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
    return class_names


def _attacks(config: AuditConfig, registry: Registry, task: str) -> list[Any]:
    """The requested attacks (default: the task's battery), cheapest first."""
    names = config.attacks or default_battery(registry, task)
    attacks = []
    for name in names:
        attack = registry.get("attacks", name)
        if not attack.public:
            raise UsageError(f"attack '{name}' is internal to medaudit (it serves {attack.title or 'the engine'}); "
                             "it is not an --attacks value")
        if task not in attack.tasks:
            raise UsageError(f"attack '{name}' does not support {task} models")
        attacks.append(attack)
    attacks.sort(key=lambda a: (a.cost, a.name))
    return attacks


def default_battery(registry: Registry, task: str) -> list[str]:
    """Every public attack for ``task`` that declares itself part of the default battery."""
    return [n for n, a in registry.attacks.items() if task in a.tasks and a.default_battery and a.public]

"""Transfer attacks: adversarial images crafted on one model (the surrogate, or source)
and shown to another (the target).

The attacker without the target's weights trains or downloads a similar model, attacks
that one with a white-box attack, and hands the results to the target; the survey names
this transferability as the main black-box threat in medical imaging. Both users of it
share this module: ``medaudit run TARGET --surrogate MODEL`` (the ``transfer-*`` attacks
in ``plugins/attacks/transfer.py``, rows of the audit's cascade and worst case) and
``medaudit transfer A B C`` (every model as the source for every other,
``auditor.engine.transfer``). Crafting goes through the one step routine
(``auditor.steps.attack_chunk``) with the registered attack, on an attack context built
around the surrogate, so a transfer PGD is the audit's PGD, with its budgets and seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from auditor.accounting import CountingModel, PassCounter
from auditor.errors import InputError, UsageError
from auditor.interfaces import AttackContext
from auditor.models import SingleLogitAsTwoClasses, open_model, probe_model
from auditor.steps import attack_chunk

SOURCE_ATTACKS = ("pgd", "autoattack")  # the white-box attacks a transfer attack crafts with
SURROGATE_KEY = "surrogate"  # AttackContext.extra key holding the surrogate's Surrogate


@dataclass
class Surrogate:
    """A model adversarial images are crafted on: its attack context (its own pass
    counter, so surrogate passes never count as target queries) and its identity."""

    ctx: AttackContext
    identity: dict[str, Any]  # name, format, sha256: recorded in every transfer row's parameters


def surrogate_context(module: torch.nn.Module, like: AttackContext) -> AttackContext:
    """An attack context for ``module`` with the target's input shape, classes, seed and
    batch size; a separate counter."""
    counter = PassCounter()
    return AttackContext(
        model=CountingModel(module, counter).eval(), device=like.device, num_classes=like.num_classes,
        input_shape=like.input_shape, task=like.task, seed=like.seed, batch_size=like.batch_size, counter=counter,
    )


def model_identity(path: Any, sha256: str, fmt: str) -> dict[str, Any]:
    """How a transfer result names a model: file name, format and content hash (not the
    full path, which says where the auditor keeps files, not what was audited)."""
    name = str(path).rstrip("/").rsplit("/", 1)[-1]
    return {"name": name, "format": fmt, "sha256": sha256}


def craft(source_attack: Any, surrogate: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float,
          params: dict[str, Any], seed: int | None, samples: Any = None,
          sample_seeds: list[int] | None = None) -> torch.Tensor:
    """Adversarial images for labels ``y`` made by ``source_attack`` on the surrogate,
    inside the eps ball and [0, 1] (the step routine projects whatever the attack returns).
    Per-sample random streams: from ``samples`` (data set indices), or the caller's own
    ``sample_seeds`` handed through (a transfer attack inside an engine step)."""
    params = dict(params)
    if sample_seeds is not None:
        params["sample_seeds"] = list(sample_seeds)
    _, x_adv, _, _ = attack_chunk(source_attack, surrogate, x, y, eps, params, seed, samples)
    return x_adv


def load_surrogate(registry: Any, path: Any, like: AttackContext, trust_model: bool = False) -> Surrogate:
    """Open a surrogate model file in any format medaudit loads (the format detected from
    the file; images in [0, 1], like the target after its own normalisation) and check it
    classifies into the target's classes at the target's input shape."""
    loaded = open_model(registry, path, trust_model=trust_model, device=str(like.device))
    probe = probe_model(loaded.module, like.input_shape, like.device)
    module = SingleLogitAsTwoClasses(loaded.module) if probe.task == "classification" and probe.binary else loaded.module
    if probe.task != "classification" or probe.num_classes != like.num_classes:
        raise InputError(f"--surrogate {path}: it outputs {probe.num_classes} classes "
                         f"({probe.task}) for {'x'.join(map(str, like.input_shape))} images; "
                         f"the target classifies into {like.num_classes}")
    return Surrogate(surrogate_context(module, like), model_identity(path, loaded.sha256, loaded.format))


def add_surrogate(config: Any, registry: Any, task: str, attacks: list[Any], ctx: AttackContext) -> list[Any]:
    """``--surrogate``: load it into ``ctx.extra`` (the engine's attack context inherits it)
    and add a transfer attack per source attack, cheapest first like the rest. Its hash joins
    the configuration's identity, so ``--resume`` refuses a different surrogate."""
    if task != "classification":
        raise UsageError("--surrogate: transfer attacks audit classification models only")
    surrogate = load_surrogate(registry, config.surrogate, ctx, trust_model=config.trust_model)
    ctx.extra[SURROGATE_KEY] = surrogate
    config.extra["surrogate_sha256"] = surrogate.identity["sha256"]
    names = {a.name for a in attacks}
    extra = [registry.get("attacks", f"transfer-{s}") for s in SOURCE_ATTACKS if f"transfer-{s}" not in names]
    return sorted([*attacks, *extra], key=lambda a: (a.cost, a.name))

"""The one step routine: how every adversarial image in medaudit is made.

``attack_chunk`` runs a registered attack on one chunk of samples with the engine's rules
(seed, out-of-memory halving, timing, projection onto the threat model); ``step_seed``
derives a step's seed and ``sample_seed`` each sample's, so that an attack's random draws
for a sample never depend on the chunk it shares (batch size, OOM split, Ray shard); ``merge_details`` and ``query_block`` fold chunks into one step's
record. Audit steps, validity checks, the clinical targeted attack, the defense and
detection evaluations and adversarial training all call ``attack_chunk``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import torch

from auditor.errors import InputError
from auditor.interfaces import AttackContext, AttackResult
from auditor.models import is_out_of_memory
from auditor.numerics import project


def step_seed(seed: int, attack: str, eps_255: float, chunk: int | None = None) -> int:
    """The seed of one attack x eps step; ``chunk`` only for callers whose draws may depend
    on the chunk (the engine's steps pass none, and per-sample seeds to ``attack_chunk``)."""
    key = f"{seed}:{attack}:{eps_255:g}" + ("" if chunk is None else f":{chunk}")
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def sample_seed(step: int, sample: int) -> int:
    """One sample's seed within a step: ``sample`` is its index in the audited data set."""
    return int(hashlib.sha256(f"{step}:{sample}".encode()).hexdigest()[:8], 16)


def attack_chunk(attack: Any, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float,
                 params: dict[str, Any], seed: int | None,
                 samples: Any = None) -> tuple[AttackResult, torch.Tensor, bool, float]:
    """One chunk of an attack step: the one routine through which every adversarial image in
    medaudit is made (audit steps, checks, clinical targeting, defenses, detection, training).
    Seeded (``params["seed"]`` and the global generators; ``seed=None`` leaves the caller's
    randomness alone, for a training loop that draws from one generator), split on
    out-of-memory, timed, and held to the threat model. Returns the attack's result, the
    adversarial images (projected back into the eps ball and [0,1] when the attack left
    them), whether that projection was needed, and the attack's seconds.

    ``samples`` (the chunk's indices in the data set) gives every sample its own seed,
    ``params["sample_seeds"]`` for the attack's per-sample streams
    (:class:`auditor.numerics.SampleStreams`): a native attack then draws the same for a
    sample whatever chunk it is in. ART backends draw from the global generators, seeded
    per step, so theirs depend on the chunk when they draw at all."""
    if seed is not None:
        params["seed"] = seed
        torch.manual_seed(seed)
        np.random.seed(seed)
    if seed is not None and samples is not None:
        params["sample_seeds"] = [sample_seed(seed, int(s)) for s in samples]
    t0 = time.perf_counter()
    try:
        result = run_attack_fitting_memory(attack, ctx, x.clone(), y, eps, params)
    finally:  # never recorded, never left for the next chunk
        params.pop("sample_seeds", None)
    seconds = time.perf_counter() - t0
    x_adv = result.x_adv.detach().to(x.dtype)
    if x_adv.shape != x.shape:
        raise InputError(f"attack '{attack.name}' returned shape {tuple(x_adv.shape)} for {tuple(x.shape)}")
    outside = (float((x_adv - x).abs().max()) > eps + 1e-6 or float(x_adv.min()) < 0 or float(x_adv.max()) > 1)
    if outside:  # the engine enforces the threat model whatever the attack did
        x_adv = project(x_adv, x, eps)
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


# Attack parameters holding one value per sample of the chunk: split with the chunk, never recorded.
PER_SAMPLE_PARAMS = ("sample_seeds", "settle_target_prob")


def run_attack_fitting_memory(attack: Any, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float,
                              params: dict[str, Any]) -> AttackResult:
    """``attack.run`` on one chunk; when the accelerator runs out of memory the chunk is
    halved and each half attacked on its own (recursively), down to a single sample.

    Each half starts from the chunk's seed and keeps its samples' own seeds, so a split run
    is reproducible, and an attack whose result for a sample does not depend on the rest of
    the batch gives the same numbers as an unsplit run."""
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
        # parameters with one value per sample go with their samples
        part_params = {**params, **{k: params[k][part] for k in PER_SAMPLE_PARAMS if params.get(k) is not None}}
        parts.append(run_attack_fitting_memory(attack, ctx, x[part], y[part], eps, part_params))
    queries = None
    if all(p.queries is not None for p in parts):
        queries = np.concatenate([np.asarray(torch.as_tensor(p.queries).cpu(), dtype=np.float64).ravel() for p in parts])
    details: dict[str, Any] = {}
    for p in parts:
        merge_details(details, p.details)
    memory = details.setdefault("memory", {})  # nested: adds up across chunks in the entry
    memory["oom_splits"] = memory.get("oom_splits", 0) + 1
    outputs = {key: torch.cat([p.outputs[key] for p in parts]) for key in parts[0].outputs}
    return AttackResult(torch.cat([p.x_adv.detach() for p in parts]), queries, details, outputs)

"""``medaudit run --plan``: what an audit will cost before it runs, from a measurement.

Nothing is attacked at scale. The audit is prepared as ``run`` would (model loaded, data
opened, attacks and their parameters chosen), then:

1. one forward and one forward+backward pass are timed at the configured batch size (or
   the whole data set, when smaller) on the audit's device: seconds per image;
2. a probe: the clean predictions of a seeded sample of ``PROBE_IMAGES`` images, and FGSM
   (one gradient step) at each eps on the ones still standing, gives the fraction of images
   the cascade would still hand to each step;
3. per attack x eps, the passes per image (:mod:`auditor.costs`, the model of the progress
   bars' ETA too) times the images: the **upper bound** (every image attacked) and the
   cascade's **expected bound** (the probe's surviving fraction; still an upper bound per
   image, since attacks after FGSM break more and Square stops early);
4. the wall-time estimate: the model's loading time as measured here, the clean pass, the
   steps and what follows them (validity checks, clinical targeted attacks:
   ``finish_units``), each priced at the measured seconds per pass;
5. what would bring it under a target (``--max-time``, when given): ``--budget quick``,
   ``--limit N``, leaving out the costliest attack, a GPU.

The engine computes; ``auditor.cli.plan_view`` prints.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from auditor.accounting import time_one_pass
from auditor.config import AuditConfig
from auditor.costs import passes_per_image
from auditor.engine.classification import ClassificationAudit
from auditor.engine.prepare import prepare
from auditor.engine.segmentation import SegmentationAudit
from auditor.progress import Progress
from auditor.registry import Registry

PROBE_IMAGES = 16


def _seconds(images: float, passes: dict[str, Any], timing: dict[str, float]) -> float:
    # every attacked image is checked once more (a forward pass) by the engine
    per_image = (passes["forward_backward"] * timing["forward_backward_s_per_sample"]
                 + (passes["forward"] + 1) * timing["forward_s_per_sample"])
    return images * per_image


def _measure(audit: Any) -> dict[str, float]:
    size = max(min(int(audit.batch_size), audit.n), 1)
    x = audit.cache.load(np.arange(size)).images.to(audit.prep.device)
    return time_one_pass(audit.ctx.model.model, x, repeats=1)


def _probe(audit: Any, images: int) -> dict[str, Any] | None:
    """Clean accuracy on a seeded sample and, per eps, the fraction FGSM leaves standing
    (an image broken at a smaller eps stays broken, as in the cascade)."""
    registry = audit.prep.registry
    if audit.prep.task != "classification" or registry is None or "fgsm" not in registry.attacks:
        return None
    rng = np.random.default_rng(audit.config.seed + 104729)
    take = np.sort(rng.choice(audit.n, size=min(images, audit.n), replace=False))
    batch = audit.cache.load(take)
    x, y = batch.images.to(audit.prep.device), batch.targets.to(audit.prep.device)
    fgsm = registry.attacks["fgsm"]
    params = {**fgsm.parameters("quick", audit.ctx), "backend": "native", "seed": audit.config.seed}
    with torch.no_grad():
        standing = audit.ctx.model(x).argmax(1) == y
    clean = float(standing.float().mean())
    surviving = {}
    for eps_255 in audit.prep.eps_255:
        if standing.any():
            idx = standing.nonzero().squeeze(1)
            x_adv = fgsm.run(audit.ctx, x[idx], y[idx], eps_255 / 255.0, params).x_adv
            with torch.no_grad():
                standing[idx] = audit.ctx.model(x_adv.detach()).argmax(1) == y[idx]
        surviving[eps_255] = float(standing.float().mean())
    return {"images": len(take), "clean_accuracy": clean, "surviving_fgsm": surviving}


def _timing_cost(size: int, timing: dict[str, float]) -> float:
    """What measuring one pass at ``size`` costs the audit (auditor.accounting.time_one_pass:
    a warm-up forward, then three forward and three forward+backward passes): the overhead
    ratio's denominator, negligible on a small model, minutes on a heavy one on a CPU."""
    return size * (4 * timing["forward_s_per_sample"] + 3 * timing["forward_backward_s_per_sample"])


def _accounting(rows: list[dict[str, Any]], batch_size: int, timing: dict[str, float]) -> float:
    """The audit's own timing: one pass at the batch size after the clean pass, and the pass
    timer at the powers of two around each step's batch size (measured once per size)."""
    sizes = {max(int(batch_size), 1)}
    for r in rows:
        size = int(min(math.ceil(r["expected"]["images"]), batch_size))
        if size >= 1:
            low = 1 << (size.bit_length() - 1)
            sizes.update({low} if low == size else {low, 2 * low})
    return sum(_timing_cost(s, timing) for s in sizes)


def _steps(prep: Any, attacks: list[Any], params: dict[str, dict[str, Any]], n: int,
           probe: dict[str, Any] | None, timing: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    cascade = prep.config.mode == "cascade"
    before = probe["clean_accuracy"] if probe else 1.0
    for eps_255 in prep.eps_255:
        after_fgsm = False
        for attack in attacks:
            passes = passes_per_image(attack, params[attack.name])
            if probe is None:
                share = 1.0
            elif not cascade:
                share = probe["clean_accuracy"]
            else:
                share = probe["surviving_fgsm"][eps_255] if after_fgsm else before
            after_fgsm = after_fgsm or attack.name == "fgsm"
            rows.append({
                "attack": attack.name, "eps_255": eps_255, "passes_per_image": passes,
                "upper": {"images": n, "seconds": _seconds(n, passes, timing)},
                "expected": {"images": n * share, "seconds": _seconds(n * share, passes, timing)},
            })
        if probe is not None:
            before = probe["surviving_fgsm"][eps_255]
    return rows


def _total(fixed_s: float, rows: list[dict[str, Any]], key: str) -> float:
    return fixed_s + sum(r[key]["seconds"] for r in rows)


def _checks_units(audit: Any) -> float:
    """The validity checks' share of ``finish_units``: the plan asks again with them off."""
    if not audit.config.checks:
        return 0.0
    with_checks = audit.finish_units()
    audit.config.checks = False
    try:
        return with_checks - audit.finish_units()
    finally:
        audit.config.checks = True


def _suggestions(audit: Any, rows: list[dict[str, Any]], fixed: dict[str, float], probe: Any,
                 timing: dict[str, float], target_s: float | None) -> list[dict[str, Any]]:
    prep, n = audit.prep, audit.n
    fixed_s = sum(fixed.values())
    expected = _total(fixed_s, rows, "expected")
    out = []
    if prep.config.budget != "quick":
        quick = {a.name: {**a.parameters("quick", audit.ctx), "backend": prep.params[a.name]["backend"]}
                 for a in prep.attacks}
        quick_rows = _steps(prep, prep.attacks, quick, n, probe, timing)
        out.append({"change": "--budget quick", "expected_s": _total(fixed_s, quick_rows, "expected")})
    constant = fixed["loading"] + fixed["finish"] + fixed["accounting"]  # about the same at any --limit
    per_image = (expected - constant) / max(n, 1)
    if target_s is not None and per_image > 0:
        fit = math.floor((target_s - constant) / per_image)
        if 0 < fit < n:
            out.append({"change": f"--limit {fit}", "expected_s": constant + fit * per_image})
    costly = {}
    for r in rows:
        costly[r["attack"]] = costly.get(r["attack"], 0.0) + r["expected"]["seconds"]
    if len(costly) > 1:
        name = max(costly, key=costly.get)
        kept = [a for a in prep.attacks if a.name != name]
        # planned again without it: in the cascade, the attacks after it then see more images
        thinned = probe
        if probe is not None and name == "fgsm":  # the probe's FGSM no longer thins the cascade
            thinned = {**probe, "surviving_fgsm": {e: probe["clean_accuracy"] for e in probe["surviving_fgsm"]}}
        fewer = _steps(prep, kept, prep.params, n, thinned, timing)
        out.append({"change": f"--attacks {','.join(a.name for a in kept)} (without {name})",
                    "expected_s": _total(fixed_s, fewer, "expected")})
    checks = _checks_units(audit)
    if checks > 0:
        out.append({"change": "--skip-checks (no evaluation validity checks: less evidence)",
                    "expected_s": expected - checks * timing["forward_backward_s_per_sample"]})
    if prep.device.type == "cpu":
        gpu = ("this machine has a CUDA GPU: rerun --plan with --device cuda to measure it"
               if torch.cuda.is_available() else "a CUDA GPU: not measurable on this machine; rerun --plan there")
        out.append({"change": gpu, "expected_s": None})
    for s in out:
        s["fits"] = None if target_s is None or s["expected_s"] is None else s["expected_s"] <= target_s
    return out


def plan_audit(config: AuditConfig, registry: Registry, progress: Progress | None = None,
               probe_images: int = PROBE_IMAGES) -> dict[str, Any]:
    """The plan of the audit ``config`` describes (see the module docstring)."""
    t0 = time.perf_counter()
    prep = prepare(config, registry, progress)
    audit = (SegmentationAudit if prep.task == "segmentation" else ClassificationAudit)(prep, progress, "plan")
    audit.before()
    loading_s = time.perf_counter() - t0
    timing = _measure(audit)
    probe = _probe(audit, probe_images)
    rows = _steps(prep, prep.attacks, prep.params, audit.n, probe, timing)
    fixed = {"loading": loading_s, "clean_pass": audit.n * timing["forward_s_per_sample"],
             "finish": audit.finish_units() * timing["forward_backward_s_per_sample"],
             "accounting": _accounting(rows, min(int(config.batch_size), audit.n), timing)}
    target_s = config.max_time
    return {
        "model": str(config.model), "task": prep.task, "images": audit.n, "device": str(prep.device),
        "batch_size": config.batch_size, "budget": config.budget, "mode": config.mode,
        "timing": timing, "probe": probe, "steps": rows, "fixed_s": fixed,
        "estimate_s": {"upper": _total(sum(fixed.values()), rows, "upper"),
                       "expected": _total(sum(fixed.values()), rows, "expected")},
        "target_s": target_s,
        "suggestions": _suggestions(audit, rows, fixed, probe, timing, target_s),
        "plan_s": time.perf_counter() - t0,
    }

"""Sharding by samples: split an audit's samples into shards, fold the shards' step
results back into the entries a local run writes, and checkpoint finished shards.

Samples are independent: every random draw depends on the sample, the attack, the eps and
the seed (:func:`auditor.steps.sample_seed`), never on which samples share a chunk. A shard
runs the whole cascade (every attack x eps, in the schedule's order) on its samples; the
merge below puts the per-sample lists back in data-set order, so every number (counts,
means, the queries block, the gallery) is computed from the same values in the same order
as on one machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from auditor.errors import InputError
from auditor.steps import merge_details, query_block

SHARD_DIR = "shards"
SHARD_FORMAT = 1


def split_samples(n: int, shards: int) -> list[list[int]]:
    """``shards`` contiguous blocks of ``range(n)`` of near-equal size (none empty)."""
    shards = max(1, min(int(shards), n)) if n else 1
    return [block.tolist() for block in np.array_split(np.arange(n), shards)]


def step_key(attack: str, eps_255: float) -> str:
    return f"{attack}@{float(eps_255):g}"


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _max(values: list[float]) -> float | None:
    return float(np.max(values)) if values else None


def merge_step(parts: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """One step's entry from its shards' (in shard order, i.e. sample order): each part is
    ``{"entry": ..., "extras": {"linf", "l2", "queries"}}`` as a shard returns it."""
    entries = [p["entry"] for p in parts]
    first = entries[0]
    broken, adv_pred, adv_conf, linf, l2, queries = [], [], [], [], [], []
    details: dict[str, Any] = {}
    passes: dict[str, Any] = {}
    for part, entry in zip(parts, entries):
        broken += entry["samples"]["broken"]
        adv_pred += entry["samples"]["adv_pred"]
        adv_conf += entry["samples"]["adv_confidence"]
        linf += part["extras"]["linf"]
        l2 += part["extras"]["l2"]
        queries += part["extras"]["queries"]
        merge_details(details, entry.get("details") or {})
        merge_details(passes, entry.get("passes") or {})
    n_attacked = sum(int(e["n_attacked"]) for e in entries)
    merged = {
        **{k: first[k] for k in ("attack", "title", "threat_model", "backend", "eps", "eps_255", "params", "seed")},
        "n": n,
        "n_attacked": n_attacked,
        "n_broken": len(broken),
        "success_rate": (len(broken) / n_attacked) if n_attacked else None,
        "perturbation": {"linf_mean": _mean(linf), "linf_max": _max(linf), "l2_mean": _mean(l2), "l2_max": _max(l2)},
        "projected_by_engine": sum(int(e["projected_by_engine"]) for e in entries),
        "passes": passes,
        # the shards' seconds added up (worker time); the driver's wall time is in results' timing
        "time_s": sum(float(e["time_s"]) for e in entries),
        "attack_time_s": sum(float(e["attack_time_s"]) for e in entries),
        "details": details,
        "samples": {"broken": broken, "adv_pred": adv_pred, "adv_confidence": adv_conf},
        "overhead": merge_overhead(entries),
    }
    if first["threat_model"] == "black-box":
        merged["queries"] = query_block(queries, int(passes.get("forward_samples", 0)), n_attacked)
    return merged


def merge_overhead(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The shards' overhead blocks as one: each shard priced its own calls at its own
    worker's measured pass costs, so the sums are worker seconds over ideal worker seconds
    (a ratio per worker would not add up; this is their time-weighted mean)."""
    blocks = [e.get("overhead") for e in entries]
    if not blocks or any(b is None for b in blocks):
        return None  # a shard without a pass timer (a query-only target): no ratio, as locally
    ideal = sum(float(b["ideal_s"]) for b in blocks)
    ideal_step = sum(float(b["step_ideal_s"]) for b in blocks)
    attack_s = sum(float(e["attack_time_s"]) for e in entries)
    step_s = sum(float(e["time_s"]) for e in entries)
    calls: dict[str, list[int]] = {}
    for b in blocks:
        for size, (fwd, bwd) in b["calls_by_batch_size"].items():
            total = calls.setdefault(size, [0, 0])
            total[0], total[1] = total[0] + int(fwd), total[1] + int(bwd)
    return {"ideal_s": ideal, "ratio": attack_s / ideal if ideal > 0 else None,
            "step_ideal_s": ideal_step, "step_ratio": step_s / ideal_step if ideal_step > 0 else None,
            "calls_by_batch_size": dict(sorted(calls.items(), key=lambda kv: int(kv[0]))),
            "priced_on": "each shard's calls at its own worker's pass costs, summed over shards"}


def merge_gallery(galleries: list[list[dict[str, Any]]], order: list[str], per_class: int) -> list[dict[str, Any]]:
    """The gallery a local run picks: the first ``per_class`` broken samples of each class,
    steps in schedule order and samples in data-set order within a step. Each shard's own
    gallery holds its first ``per_class`` of each class, so the global firsts are among them."""
    rank = {key: i for i, key in enumerate(order)}
    candidates = sorted((g for gallery in galleries for g in gallery),
                        key=lambda g: (rank[step_key(g["attack"], g["eps_255"])], g["index"]))
    chosen: list[dict[str, Any]] = []
    for g in candidates:
        if sum(c["label"] == g["label"] for c in chosen) < per_class and all(c["index"] != g["index"] for c in chosen):
            chosen.append(g)
    return chosen


# ------------------------------------------------------------------ checkpoints
def shard_path(out: Path, shard: int) -> Path:
    return Path(out) / SHARD_DIR / f"shard-{shard:04d}.json"


def save_shard(out: Path, shard: int, payload: dict[str, Any]) -> None:
    """Atomically, so a driver killed mid-write leaves the previous state, never half a file."""
    path = shard_path(out, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def load_shards(out: Path, cfg_hash: str, layout: list[list[int]]) -> dict[int, dict[str, Any]]:
    """Finished shards of the same audit (configuration hash) and the same sample layout;
    anything else in the folder is ignored and redone. A file that is not a shard
    checkpoint (hand-edited, truncated, foreign) is refused with the file's name."""
    found: dict[int, dict[str, Any]] = {}
    for shard, samples in enumerate(layout):
        path = shard_path(out, shard)
        if not path.is_file():
            continue
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not a shard checkpoint ({exc.__class__.__name__}); delete it to redo the shard") from None
        if not _valid_shard(payload):
            raise InputError(f"{path} is not a shard checkpoint of medaudit; delete it to redo the shard")
        if payload["config_hash"] == cfg_hash and payload["samples"] == samples:
            found[shard] = payload
    return found


def _valid_shard(payload: Any) -> bool:
    if not isinstance(payload, dict) or payload.get("format") != SHARD_FORMAT:
        return False
    steps, gallery = payload.get("steps"), payload.get("gallery")
    if not (isinstance(payload.get("config_hash"), str) and isinstance(payload.get("samples"), list)
            and isinstance(steps, dict) and isinstance(gallery, list)):
        return False
    own = {i for i in payload["samples"] if isinstance(i, int)}
    for part in steps.values():
        entry, extras = (part or {}).get("entry"), (part or {}).get("extras")
        if not (isinstance(entry, dict) and isinstance(extras, dict) and isinstance(entry.get("samples"), dict)):
            return False
        if not all(isinstance(extras.get(k), list) for k in ("linf", "l2", "queries")):
            return False
        samples = entry["samples"]
        if "values" in extras:  # segmentation: per-image values of the shard's own images
            if not (isinstance(extras["values"], dict) and all(isinstance(v, list) and len(v) == len(own)
                                                                for v in extras["values"].values())):
                return False
            continue
        if not all(isinstance(samples.get(k), list) for k in ("broken", "adv_pred", "adv_confidence")):
            return False
        if not all(isinstance(i, int) and i in own for i in samples["broken"]):
            return False
    return all(isinstance(g, dict) and isinstance(g.get("index"), int) for g in gallery)

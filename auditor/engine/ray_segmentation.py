"""``medaudit run --engine ray`` for segmentation audits: every attack x eps on a shard of
images per Ray task, merged into the entries a local run writes.

Segmentation has no cascade (every attack runs on every image at every eps), so a shard is
simply the local loop restricted to its images. The driver runs the clean pass and hands
each worker what the steps need from it (per-image clean metrics, the clean masks of the
gallery images); a worker returns, per step, its images' unrounded Dice, IoU, sensitivity,
missed-lesion and predicted-area values, perturbation norms and queries, and the driver
recomputes every aggregate (means, bootstrap intervals, the queries block) from the values
in image order, as one machine does. Checks and universal perturbations run on the driver.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from auditor.accounting import PassTimer
from auditor.engine.prepare import Prepared
from auditor.engine.ray_engine import RayShards
from auditor.engine.segmentation import METRIC_KEYS, SegmentationAudit, _mean, _rounded
from auditor.engine.shards import merge_overhead, step_key
from auditor.progress import Progress
from auditor.steps import merge_details, query_block

STEP_KEYS = METRIC_KEYS + ("pred_area",)


class SegmentationShard(SegmentationAudit):
    """A worker's audit: the driver's clean values, every step on one shard's images."""

    def __init__(self, prep: Prepared, clean: dict[str, Any], samples: list[int], progress: Progress,
                 timer: PassTimer | None = None) -> None:
        super().__init__(prep, progress)
        self.samples = np.asarray(samples, dtype=np.int64)
        self.ids = list(clean["ids"])
        self.clean_values = {k: np.asarray(v, dtype=float) for k, v in clean["values"].items()}
        self.gallery_clean = {int(i): np.asarray(m, dtype=np.uint8) for i, m in clean["gallery_clean"].items()}
        self.pass_timer = timer or PassTimer(prep.model.module, self._batch(self.samples[:self.batch_size])[0])

    def step_samples(self) -> np.ndarray:
        return self.samples

    def run_shard(self) -> dict[str, Any]:
        steps: dict[str, Any] = {}
        own = self.samples
        for eps_255 in self.prep.eps_255:
            for attack in self.prep.attacks:
                entry = self.run_step(attack, eps_255)
                extras = self.step_extras
                steps[step_key(attack.name, eps_255)] = {"entry": entry, "extras": {
                    "values": {k: extras["values"][k][own].tolist() for k in STEP_KEYS},
                    "linf": extras["linf"][own].tolist(), "l2": extras["l2"][own].tolist(),
                    "queries": list(extras["queries"])}}
        return {"steps": steps, "gallery": self.gallery}


class RaySegmentationAudit(RayShards, SegmentationAudit):
    """A segmentation audit whose steps run on Ray shards (:class:`SegmentationShard`)."""

    shard_class = SegmentationShard

    def shard_clean(self) -> dict[str, Any]:
        return {"ids": self.ids, "values": dict(self.clean_values), "gallery_clean": dict(self.gallery_clean)}

    def shard_units(self) -> float:
        return float(self.n)

    def merge_shards(self, shards: list[dict[str, Any]], layout: list[list[int]], order: list[str]) -> dict[str, Any]:
        merged = {key: self._merge_step([s["steps"][key] for s in shards], layout) for key in order}
        # each gallery image lies in one shard, which picked its lowest-Dice step as a local run does
        self.gallery = sorted((g for s in shards for g in s["gallery"]), key=lambda g: g["index"])
        return merged

    def _merge_step(self, parts: list[dict[str, Any]], layout: list[list[int]]) -> dict[str, Any]:
        values = {k: np.full(self.n, np.nan) for k in STEP_KEYS}
        linf, l2 = np.zeros(self.n), np.zeros(self.n)
        queries: list[float] = []
        details: dict[str, Any] = {}
        passes: dict[str, Any] = {}
        for part, samples in zip(parts, layout):
            own, extras = np.asarray(samples, dtype=np.int64), part["extras"]
            for k in STEP_KEYS:
                values[k][own] = np.asarray(extras["values"][k], dtype=float)
            linf[own], l2[own] = extras["linf"], extras["l2"]
            queries += extras["queries"]
            merge_details(details, part["entry"].get("details") or {})
            merge_details(passes, part["entry"].get("passes") or {})
        entries = [p["entry"] for p in parts]
        first = entries[0]
        entry = {k: first[k] for k in ("attack", "title", "threat_model", "loss", "targeted", "backend", "eps", "eps_255")}
        entry.update({
            **self._aggregate(values), "mode": "independent",
            "perturbation": {"linf_mean": float(linf.mean()), "linf_max": float(linf.max()),
                             "l2_mean": float(l2.mean()), "l2_max": float(l2.max())},
            "projected_by_engine": sum(int(e["projected_by_engine"]) for e in entries),
            "params": first["params"], "seed": first["seed"], "passes": passes,
            # the shards' seconds added up (worker time); the driver's wall time is in results' timing
            "time_s": sum(float(e["time_s"]) for e in entries),
            "attack_time_s": sum(float(e["attack_time_s"]) for e in entries),
            "overhead": merge_overhead(entries), "details": details,
            "samples": {k: _rounded(values[k], 0 if k in ("missed", "pred_area") else 6) for k in STEP_KEYS},
        })
        clean_dice = _mean(self.clean_values["dice"])
        entry["dice_drop"] = (clean_dice - entry["dice"]) if clean_dice is not None and entry["dice"] is not None else None
        if entry["threat_model"] == "black-box":
            entry["queries"] = query_block(queries, int(passes.get("forward_samples", 0)), self.n)
        return entry

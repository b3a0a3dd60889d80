"""The segmentation audit (specialises :class:`auditor.engine.skeleton.AuditSkeleton`).

load model -> load data -> clean pass -> attack steps (eps ascending, attacks cheap to
expensive) -> worst case -> summary -> results.json, written atomically after every
attack x eps step so ``--resume`` continues from the last finished one. The engine never
prints and never renders templates.

* Every attack runs on every image at every eps (there is no "broken" sample to take out
  of a cascade: a mask degrades by degrees), so each entry holds that attack's own Dice,
  IoU, lesion sensitivity and missed-lesion rate, the survey's Table 5 (loss x eps).
* Labels reach an attack with :data:`plugins.attacks.seg_losses.IGNORE_INDEX` outside
  the region of interest; metrics count only pixels inside it. The attack gets copies:
  the masks and ROIs the metrics use are never handed out.
* The engine enforces the threat model whatever an attack returns: the perturbation is
  projected onto the L-inf ball of radius eps and into [0, 1] (counted in
  ``projected_by_engine``).
* ``worst_case`` per eps takes, per image, the attack with the lowest Dice among all
  attacks at that eps or a smaller one (a perturbation in a smaller ball lies in the
  larger one), and reports that attack's Dice, IoU and missed-lesion outcome; besides,
  ``missed_rate_any`` counts an image as missed when any of those attacks erased its lesion.
* Metric conventions (empty ground truth, thresholds) are those of :mod:`plugins.metrics`:
  one sigmoid channel is foreground where logit >= 0, K channels take the argmax; an
  image with an empty ground truth has Dice 1 when its prediction is empty too, else 0.
  ``missed_fraction`` (``config.extra``, default 0.5) sets when a lesion counts as missed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditor.accounting import PassTimer
from auditor.engine.prepare import Prepared
from auditor.engine.record import environment, overhead_block, results_header
from auditor.engine.skeleton import AuditSkeleton, attack_units
from auditor.steps import attack_chunk, merge_details, query_block, step_seed
from auditor.engine.summary import summarise_segmentation
from auditor.errors import InputError, UsageError
from auditor.evaluation.checks.base import skipped_checks
from auditor.evaluation.checks.segmentation_checks import SEG_CHECK_COUNT, check_units, run_segmentation_checks
from auditor.evaluation.universal import uap_for_audit
from auditor.imagery import CONTOUR_LEGEND, overlay_png, png_base64
from auditor.interfaces import Metric
from auditor.numerics import DEFAULT_MISSED_FRACTION, IGNORE_INDEX, class_counts, lesion_areas, logits_to_labels
from auditor.progress import IterationTicks, Progress
from auditor.registry import Registry, get_registry
from auditor.results import write_results
from auditor.stats import bootstrap_mean_ci

GALLERY_IMAGES = 3
# Segmentation maps are large: bound the pixels per model call so a default --batch-size
# of 32 does not ask for tens of GB of activations on 576x560 fundus images.
MAX_PIXELS_PER_BATCH = 2**21
METRIC_KEYS = ("dice", "iou", "sensitivity", "missed")


# the audit's metric keys and the registered metrics that compute them
METRIC_NAMES = {"dice": "dice", "iou": "iou", "sensitivity": "sensitivity", "missed": "lesion_missed"}


def default_metrics(registry: Registry, missed_fraction: float) -> dict[str, Metric]:
    """The segmentation metrics from the registry, configured for this audit."""
    return {key: registry.get("metrics", name).configured(missed_fraction=missed_fraction)
            for key, name in METRIC_NAMES.items()}


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _rounded(values: np.ndarray, digits: int = 6) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), digits) for v in values]


class SegmentationAudit(AuditSkeleton):
    """Runs one prepared segmentation audit, writing results.json after every step."""

    def __init__(self, prep: Prepared, progress: Progress | None = None, command: str | None = None,
                 metrics: dict[str, Metric] | None = None) -> None:
        self.config = prep.config
        self.missed_fraction = float(self.config.extra.get("missed_fraction", DEFAULT_MISSED_FRACTION))
        if not 0.0 < self.missed_fraction <= 1.0:
            raise UsageError(f"missed_fraction must be in (0, 1], not {self.missed_fraction}")
        if getattr(prep, "defense", None) is not None:
            raise UsageError("--defense is not supported for segmentation audits yet; audit the defended "
                             "model as its own TorchScript file")
        if self.config.detector_fit is not None:
            raise UsageError("--detector-fit is for classification audits (the detector models class-conditional "
                             "features); it does not apply to segmentation")
        self.metrics = metrics or default_metrics(prep.registry or get_registry(), self.missed_fraction)
        missing = [k for k in METRIC_KEYS if k not in self.metrics]
        if missing:
            raise UsageError(f"segmentation audit needs the metrics {', '.join(missing)}")
        _, height, width = prep.input_shape
        batch_size = max(1, min(self.config.batch_size, MAX_PIXELS_PER_BATCH // max(height * width, 1)))
        super().__init__(prep, progress, command, prep.model.module, batch_size)
        self.gallery_indices = sorted({int(round(v)) for v in np.linspace(0, self.n - 1, min(GALLERY_IMAGES, self.n))})

    # ------------------------------------------------------------------ helpers
    def _batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[str]]:
        batch = self.cache.load(indices)
        device = self.prep.device
        if batch.targets.dim() != 3:
            raise InputError(f"segmentation targets must be (N, H, W) masks, got {tuple(batch.targets.shape)}")
        roi = batch.roi.to(device).bool() if batch.roi is not None else None
        return batch.images.to(device), batch.targets.to(device), roi, batch.ids

    @torch.no_grad()
    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.prep.model.module(x)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 4 or tuple(logits.shape[2:]) != tuple(x.shape[2:]):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise InputError(f"the model returned {shape} for a {tuple(x.shape)} batch; a segmentation model "
                             f"must return (N, K, {x.shape[2]}, {x.shape[3]}) logits")
        if not torch.isfinite(logits).all():
            raise InputError("the model returned NaN or Inf logits; check the model and its input range")
        return logits

    def _evaluate(self, logits: torch.Tensor, y: torch.Tensor, roi: torch.Tensor | None) -> dict[str, np.ndarray]:
        values = {k: self.metrics[k].compute(logits, y, roi).double().cpu().numpy() for k in METRIC_KEYS}
        predicted, true = lesion_areas(logits_to_labels(logits), y, roi)
        values["pred_area"] = predicted.cpu().numpy()
        values["true_area"] = true.cpu().numpy()
        return values

    def _aggregate(self, values: dict[str, np.ndarray]) -> dict[str, Any]:
        agg = {k: self.metrics[k].aggregate(torch.from_numpy(values[k])) for k in METRIC_KEYS}
        agg = {k: (v if np.isfinite(v) else None) for k, v in agg.items()}
        missed = values["missed"]
        # the same seeded resamples of images for every block, so intervals are comparable
        dice_ci = bootstrap_mean_ci(values["dice"], seed=self.config.seed)
        iou_ci = bootstrap_mean_ci(values["iou"], seed=self.config.seed)
        return {
            "dice": agg["dice"], "iou": agg["iou"], "sensitivity": agg["sensitivity"], "missed_rate": agg["missed"],
            "n": int(len(values["dice"])), "n_missed": int(np.nansum(missed)),
            "n_with_lesion": int(np.isfinite(missed).sum()),
            "dice_sd": float(np.std(values["dice"])) if len(values["dice"]) else None,
            "dice_ci95": dice_ci["ci95"], "iou_ci95": iou_ci["ci95"],
            **{k: v for k, v in dice_ci.items() if k != "ci95"},
        }

    # --------------------------------------------------------------- clean pass
    def clean_pass(self) -> dict[str, Any]:
        keys = METRIC_KEYS + ("pred_area", "true_area")
        values = {k: np.full(self.n, np.nan) for k in keys}
        k = max(self.prep.num_classes, 2)
        pixel_counts = np.zeros(k, dtype=np.int64)
        image_counts = np.zeros(k, dtype=np.int64)  # images holding each class: the table counts images
        pooled = np.zeros((3, k - 1))
        ids: list[str] = []
        self.gallery_clean: dict[int, np.ndarray] = {}
        has_roi = False
        t0 = time.perf_counter()
        with self.progress.task("clean pass", self.n) as task:
            for chunk in self._chunks(np.arange(self.n)):
                x, y, roi, batch_ids = self._batch(chunk)
                has_roi = has_roi or roi is not None
                if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
                    raise InputError(f"a mask holds class {int(y.max())} but the model segments {k} classes "
                                     f"({', '.join(self.prep.class_names)}); check the masks or mask_values")
                logits = self._predict(x)
                for key, v in self._evaluate(logits, y, roi).items():
                    values[key][chunk] = v
                pred = logits_to_labels(logits)
                tp, fp, fn = class_counts(pred, y, roi, k)
                pooled += np.stack([tp.sum(0).cpu().numpy(), fp.sum(0).cpu().numpy(), fn.sum(0).cpu().numpy()])
                inside = y if roi is None else y[roi]
                pixel_counts += np.bincount(inside.flatten().cpu().numpy().clip(0, k - 1), minlength=k)[:k]
                in_roi = roi if roi is not None else torch.ones_like(y, dtype=torch.bool)
                image_counts += np.array([int(((y == c) & in_roi).flatten(1).any(1).sum()) for c in range(k)])
                for j, i in enumerate(chunk):
                    if int(i) in self.gallery_indices:
                        self.gallery_clean[int(i)] = pred[j].cpu().numpy().astype(np.uint8)
                ids.extend(batch_ids)
                task.advance(len(chunk))
        self.clean_time = time.perf_counter() - t0
        self.ids = ids
        self.clean_values = values
        self.pixel_counts = pixel_counts
        self.image_counts = image_counts
        self.has_roi = has_roi
        tp, fp, fn = pooled
        denominator = 2 * tp + fp + fn
        present = denominator > 0
        block = self._aggregate(values)
        block["dice_pooled"] = float(np.mean((2 * tp / np.maximum(denominator, 1))[present])) if present.any() else 1.0
        block["samples"] = {
            "ids": ids, "dice": _rounded(values["dice"]), "iou": _rounded(values["iou"]),
            "sensitivity": _rounded(values["sensitivity"]), "missed": _rounded(values["missed"], 0),
            "pred_area": _rounded(values["pred_area"], 0), "true_area": _rounded(values["true_area"], 0),
        }
        return block

    # ------------------------------------------------------------ attack steps
    def run_step(self, attack: Any, eps_255: float) -> dict[str, Any]:
        eps = eps_255 / 255.0
        params = dict(self.prep.params[attack.name])
        keys = METRIC_KEYS + ("pred_area",)
        values = {k: np.full(self.n, np.nan) for k in keys}
        linf = np.zeros(self.n)
        l2 = np.zeros(self.n)
        queries: list[float] = []
        details: dict[str, Any] = {}
        projected = 0
        largest = eps_255 == max(self.prep.eps_255)
        before = self.counter.snapshot()
        before_sizes = self.counter.sizes()
        verify_calls: dict[int, list[int]] = {}  # the engine's own evaluation of each result: forward passes
        attack_time = 0.0
        t0 = time.perf_counter()
        with self.progress.task(f"{attack.name} eps={eps_255:g}/255", self.n) as task:
            for chunk in self._chunks(self.step_samples()):
                x, y, roi, _ = self._batch(chunk)
                y_attack = torch.where(roi, y, torch.full_like(y, IGNORE_INDEX)) if roi is not None else y.clone()
                seed = step_seed(self.config.seed, attack.name, eps_255)
                ticks = IterationTicks(task, len(chunk), int(attack_units(attack, params)))
                self.ctx.extra["on_iteration"] = ticks
                try:
                    result, x_adv, outside, seconds = attack_chunk(attack, self.ctx, x, y_attack, eps, params, seed,
                                                                   chunk)
                finally:
                    self.ctx.extra.pop("on_iteration", None)
                attack_time += seconds
                projected += len(chunk) if outside else 0
                delta = x_adv - x
                logits = self._predict(x_adv)
                verify_calls.setdefault(len(chunk), [0, 0])[0] += 1
                evaluated = self._evaluate(logits, y, roi)
                for key in keys:
                    values[key][chunk] = evaluated[key]
                flat = delta.flatten(1)
                linf[chunk] = flat.abs().max(1).values.double().cpu().numpy()
                l2[chunk] = flat.double().norm(dim=1).cpu().numpy()
                if result.queries is not None:
                    queries.extend(float(q) for q in np.asarray(result.queries).ravel())
                merge_details(details, result.details)
                if largest:
                    self._maybe_gallery(attack, params["loss"], eps_255, chunk, x, x_adv, y, roi, logits,
                                        evaluated["dice"], evaluated["iou"])
                ticks.finish()
        elapsed = time.perf_counter() - t0
        passes = self.counter.since(before)
        self.step_extras = {"values": values, "linf": linf, "l2": l2, "queries": queries}  # for a sharded merge
        entry: dict[str, Any] = {
            "attack": attack.name,
            "title": attack.title,
            "threat_model": attack.threat_model,
            "loss": params["loss"],
            "targeted": bool(params.get("targeted", False)),
            "backend": params["backend"],
            "eps": eps,
            "eps_255": eps_255,
            **self._aggregate(values),
            "mode": "independent",
            "perturbation": {
                "linf_mean": float(linf.mean()), "linf_max": float(linf.max()),
                "l2_mean": float(l2.mean()), "l2_max": float(l2.max()),
            },
            "projected_by_engine": projected,
            "params": {k: v for k, v in params.items() if k != "seed"},
            "seed": self.config.seed,
            "passes": passes,
            "time_s": elapsed,
            "attack_time_s": attack_time,
            "overhead": overhead_block(getattr(self, "pass_timer", None), attack_time, elapsed,
                                       self.counter.sizes_since(before_sizes), verify_calls),
            "details": details,
            "samples": {k: _rounded(values[k], 0 if k in ("missed", "pred_area") else 6) for k in keys},
        }
        clean_dice = _mean(self.clean_values["dice"])
        entry["dice_drop"] = (clean_dice - entry["dice"]) if clean_dice is not None and entry["dice"] is not None else None
        if attack.threat_model == "black-box":
            entry["queries"] = query_block(queries, passes["forward_samples"], self.n)
        return entry

    # ------------------------------------------------------------------ gallery
    def _maybe_gallery(self, attack: Any, loss: str, eps_255: float, chunk: np.ndarray, x: torch.Tensor,
                       x_adv: torch.Tensor, y: torch.Tensor, roi: torch.Tensor | None, logits: torch.Tensor,
                       dice: np.ndarray, iou: np.ndarray) -> None:
        """Keep, per gallery image, the attack at the largest eps that left the lowest Dice."""

        adv_pred = None
        for j, i in enumerate(int(v) for v in chunk):
            if i not in self.gallery_indices or i not in self.gallery_clean:
                continue
            current = next((g for g in self.gallery if g["index"] == i), None)
            if current is not None and current["dice_adv"] is not None and current["dice_adv"] <= float(dice[j]):
                continue
            if adv_pred is None:
                adv_pred = logits_to_labels(logits).cpu().numpy()
            roi_j = roi[j].cpu().numpy() if roi is not None else None
            delta = x_adv[j] - x[j]
            scale = float(delta.abs().max()) or 1.0
            item = {
                "index": i, "id": self.ids[i], "attack": attack.name, "loss": loss, "eps_255": eps_255,
                "dice_clean": float(self.clean_values["dice"][i]), "dice_adv": float(dice[j]),
                "iou_clean": float(self.clean_values["iou"][i]), "iou_adv": float(iou[j]),
                "true_area": float(self.clean_values["true_area"][i]),
                "clean_pred_area": float(self.clean_values["pred_area"][i]),
                "adv_pred_area": float((adv_pred[j] > 0)[roi_j if roi_j is not None else slice(None)].sum()),
                "perturbation_scale": scale,
                "overlay_png": overlay_png(x[j].cpu().numpy(), y[j].cpu().numpy(), self.gallery_clean[i],
                                           adv_pred[j], roi_j),
                "adv_png": png_base64(x_adv[j], max_side=320),
                "perturbation_png": png_base64(0.5 + 0.5 * delta / scale, max_side=320),
                "legend": [dict(item) for item in CONTOUR_LEGEND if item["key"] != "roi" or roi_j is not None],
            }
            self.gallery = [g for g in self.gallery if g["index"] != i] + [item]
            self.gallery.sort(key=lambda g: g["index"])

    # --------------------------------------------------------------- worst case
    def worst_case(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for eps_255 in self.prep.eps_255:
            relevant = [e for e in entries if e["eps_255"] <= eps_255]
            if not relevant:
                continue
            table = {k: np.array([[np.nan if v is None else v for v in e["samples"][k]] for e in relevant], dtype=float)
                     for k in METRIC_KEYS}
            dice = np.where(np.isnan(table["dice"]), np.inf, table["dice"])
            pick = dice.argmin(axis=0)  # ties go to the cheaper attack / smaller eps, listed first
            cols = np.arange(self.n)
            worst = {k: table[k][pick, cols] for k in METRIC_KEYS}
            worst_by: dict[str, int] = {}
            for p in pick:
                worst_by[relevant[p]["attack"]] = worst_by.get(relevant[p]["attack"], 0) + 1
            block = self._aggregate(worst)
            # The lowest-Dice attack need not be the one that erases the lesion (lesion removal
            # shrinks the mask, an untargeted attack scatters it): count misses by any attack too.
            missed = table["missed"]
            has_lesion = ~np.isnan(missed).all(axis=0)
            missed_any = np.where(has_lesion, np.nan_to_num(missed, nan=0.0).max(axis=0), np.nan)
            out.append({
                "eps": eps_255 / 255.0, "eps_255": eps_255, **block,
                "missed_rate_any": _mean(missed_any), "n_missed_any": int(np.nansum(missed_any)),
                "worst_by": worst_by, "n_attacks": len({e["attack"] for e in relevant}),
                "samples": {"dice": _rounded(worst["dice"]), "iou": _rounded(worst["iou"]),
                            "missed": _rounded(worst["missed"], 0),
                            "attack": [relevant[p]["attack"] for p in pick],
                            "eps_255": [relevant[p]["eps_255"] for p in pick]},
            })
        return out

    # --------------------------------------------------------------------- run
    def base_results(self, cfg_hash: str) -> dict[str, Any]:
        prep = self.prep
        results = results_header(prep, self.command, cfg_hash, self.n)
        binary = prep.num_classes == 2 and prep.probe is not None and prep.probe.binary
        results["model"].update({
            "task": "segmentation",
            "output_channels": int(prep.probe.output_shape[1]) if prep.probe is not None else None,
            "threshold": "logit >= 0 (sigmoid >= 0.5)" if binary else "argmax over classes",
        })
        return {
            **results,
            "config": {
                "modality": prep.modality.name, "task": "segmentation", "mode": "independent",
                "eps_255": prep.eps_255, "eps": [e / 255.0 for e in prep.eps_255],
                "attacks": [{"name": a.name, "title": a.title, "threat_model": a.threat_model,
                             "reference": a.reference, "loss": prep.params[a.name].get("loss"),
                             "params": prep.params[a.name]} for a in prep.attacks],
                "budget": prep.config.budget, "seed": prep.config.seed, "device": str(prep.device),
                "batch_size": prep.config.batch_size, "batch_size_effective": self.batch_size, "norm": "linf",
                "missed_fraction": self.missed_fraction,
                "metrics": {k: {"name": m.name, "description": m.description} for k, m in self.metrics.items()},
            },
            "clean": None,
            "attacks": [],
            "worst_case": [],
            "gallery": [],
            "checks": None,
            "environment": environment(prep.device),
        }

    # ------------------------------------------------------------ skeleton hooks
    def begin(self, results: dict[str, Any]) -> None:
        prep = self.prep
        results["clean"] = self.clean_pass()
        named = [(c, name) for c, name in enumerate(prep.class_names) if c < len(self.pixel_counts)]
        results["data"]["per_class_counts"] = {name: int(self.image_counts[c]) for c, name in named}
        results["data"]["count_unit"] = "images holding the class" + (" inside the ROI" if self.has_roi else "")
        results["data"]["per_class_pixels"] = {name: int(self.pixel_counts[c]) for c, name in named}
        results["data"]["pixel_unit"] = "pixels inside the ROI" if self.has_roi else "pixels"
        results["data"]["has_roi"] = self.has_roi
        results["timing"] = {"clean_pass_s": self.clean_time,
                             "forward_s_per_sample": self.clean_time / max(self.n, 1)}
        # the overhead ratio's denominator: passes timed lazily at the batch sizes the attacks use
        self.pass_timer = PassTimer(prep.model.module, self._batch(np.arange(min(self.n, self.batch_size)))[0])

    def step(self, attack: Any, eps_255: float) -> dict[str, Any]:
        return self.run_step(attack, eps_255)

    def step_samples(self) -> np.ndarray:
        return np.arange(self.n)  # a Ray shard attacks its own samples only

    def finish_units(self) -> float:
        if not self.config.checks:
            return 0.0
        return check_units(self, self.config.check_samples)

    def finish(self, results: dict[str, Any]) -> None:
        if self.config.checks:
            with self.progress.task("validity checks", SEG_CHECK_COUNT) as task:
                results["checks"] = run_segmentation_checks(self, results, self.config.check_samples, task)
        else:
            results["checks"] = skipped_checks("turned off (--skip-checks)")
        results["universal"] = uap_for_audit(self, results) if self.config.uap else None
        results["summary"] = summarise_segmentation(results)
        results["status"] = "complete"
        write_results(Path(self.config.out), results)

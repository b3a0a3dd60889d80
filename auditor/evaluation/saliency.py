"""Saliency, clean vs adversarial (``medaudit run --saliency``): where the model looks
before and after an attack, and how much of its attention stays on the lesion.

Method: integrated gradients (Sundararajan et al., "Axiomatic Attribution for Deep
Networks", ICML 2017) from captum, black baseline, ``IG_STEPS`` steps, for the class the
model predicts on each image (the clean image's prediction is its true class: only
correctly classified images are explained). The saliency map of an image is the absolute
attribution summed over channels. Integrated gradients rather than Grad-CAM because it
needs only the model's input gradients: it works for every format medaudit loads
(TorchScript, ONNX, Keras) without naming a convolution layer.

Per eps, on up to ``--saliency-samples`` seeded clean-correct images, each attacked by the
audit's PGD (native, the audit's budget) through the engine's step routine:

* ``inside_clean`` / ``inside_adv``: the share of saliency mass inside the lesion mask
  (classification data with lesion masks: a CSV ``mask`` column or ``--roi``), mean over
  images with a bootstrap interval; ``inside_change`` is the paired per-image difference.
* ``top_overlap``: the share of the clean map's most salient fifth of pixels that stays
  in the adversarial map's most salient fifth (1.0: the attack did not move attention).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditor.errors import UsageError
from auditor.imagery import png_base64
from auditor.stats import bootstrap_mean_ci
from auditor.steps import attack_chunk, step_seed

IG_STEPS = 32
TOP_FRACTION = 0.2
EXAMPLES = 4
ATTACK = "pgd"


def require_captum() -> None:
    try:
        import captum.attr  # noqa: F401 - only whether it imports
    except ImportError as exc:
        raise UsageError("--saliency needs captum: pip install 'medaudit[saliency]' (or pip install captum)") from exc


def saliency_maps(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, H, W) absolute integrated-gradients attribution of class ``target`` per image."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(model)
    attribution = ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=IG_STEPS,
                               internal_batch_size=max(batch_size, IG_STEPS))
    return attribution.detach().abs().sum(1)


def inside_fraction(saliency: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Per image, the share of saliency mass inside ``mask``; NaN for an all-zero map."""
    total = saliency.flatten(1).sum(1).double()
    inside = (saliency * mask.to(saliency.dtype)).flatten(1).sum(1).double()
    return torch.where(total > 0, inside / total.clamp(min=1e-30), torch.full_like(total, float("nan"))).cpu().numpy()


def top_overlap(clean: torch.Tensor, adv: torch.Tensor, fraction: float = TOP_FRACTION) -> np.ndarray:
    """Per image, the share of ``clean``'s top ``fraction`` pixels that are in ``adv``'s."""
    flat_clean, flat_adv = clean.flatten(1), adv.flatten(1)
    k = max(1, int(round(fraction * flat_clean.shape[1])))
    top_clean = torch.zeros_like(flat_clean, dtype=torch.bool).scatter_(1, flat_clean.topk(k, dim=1).indices, True)
    top_adv = torch.zeros_like(flat_adv, dtype=torch.bool).scatter_(1, flat_adv.topk(k, dim=1).indices, True)
    return ((top_clean & top_adv).sum(1).double() / k).cpu().numpy()


def heat_png(image: torch.Tensor, saliency: torch.Tensor) -> str:
    """The saliency over a dimmed grey copy of ``image`` ((C, H, W) in [0, 1]), normalised
    to the map's 99th percentile, as a base64 PNG (yellow-red: high attribution)."""
    grey = image.mean(0, keepdim=True)
    top = float(torch.quantile(saliency.flatten().float(), 0.99)) or 1.0
    heat = (saliency / top).clamp(0, 1)[None]
    rgb = torch.cat([0.4 * grey + 0.6 * heat, 0.4 * grey + 0.6 * heat ** 2, 0.4 * grey], dim=0)
    return png_base64(rgb.clamp(0, 1))


def _interval(values: np.ndarray, seed: int) -> list[float | None]:
    return bootstrap_mean_ci(values, seed=seed)["ci95"]


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _eps_row(eps_255: float, fooled: np.ndarray, inside: tuple[np.ndarray, np.ndarray] | None,
             overlap: np.ndarray, seed: int) -> dict[str, Any]:
    row: dict[str, Any] = {"eps_255": eps_255, "n": int(len(fooled)), "n_fooled": int(fooled.sum()),
                           "top_overlap": _mean(overlap), "top_overlap_ci95": _interval(overlap, seed)}
    if inside is not None:
        clean, adv = inside
        change = adv - clean
        row.update({"inside_clean": _mean(clean), "inside_clean_ci95": _interval(clean, seed),
                    "inside_adv": _mean(adv), "inside_adv_ci95": _interval(adv, seed),
                    "inside_change": _mean(change), "inside_change_ci95": _interval(change, seed)})
    return row


def _chosen(audit: Any) -> np.ndarray:
    correct = np.nonzero(audit.correct)[0]
    rng = np.random.default_rng(audit.config.seed)
    return np.sort(rng.permutation(correct)[: audit.config.saliency_samples])


def saliency_for_audit(audit: Any) -> dict[str, Any]:
    """The ``saliency`` block of a classification audit (see the module docstring)."""
    require_captum()
    prep, config = audit.prep, audit.config
    chosen = _chosen(audit)
    if chosen.size == 0:
        return {"method": "integrated gradients", "n": 0, "per_eps": [], "examples": [],
                "note": "the model classifies none of the audit images correctly: nothing to explain"}
    batch = audit.cache.load(chosen)
    x, y = batch.images.to(prep.device), batch.targets.to(prep.device)
    mask = batch.roi.to(prep.device) if batch.roi is not None else None
    model = audit.ctx.model
    attack = prep.registry.get("attacks", ATTACK)
    params = {**attack.parameters(config.budget, audit.ctx), "backend": "native"}
    clean_map = saliency_maps(model, x, y, config.batch_size)
    clean_inside = inside_fraction(clean_map, mask) if mask is not None else None
    rows, examples = [], []
    with audit.progress.task("saliency (integrated gradients)", len(prep.eps_255)) as task:
        for eps_255 in prep.eps_255:
            seed = step_seed(config.seed, "saliency", eps_255, 0)
            _, x_adv, _, _ = attack_chunk(attack, audit.ctx, x, y, eps_255 / 255.0, dict(params), seed)
            with torch.no_grad():
                adv_pred = model(x_adv).argmax(1)
            adv_map = saliency_maps(model, x_adv, adv_pred, config.batch_size)
            fooled = (adv_pred != y).cpu().numpy()
            inside = (clean_inside, inside_fraction(adv_map, mask)) if mask is not None else None
            rows.append(_eps_row(eps_255, fooled, inside, top_overlap(clean_map, adv_map), config.seed))
            if eps_255 == max(prep.eps_255):
                order = np.argsort(~fooled, kind="stable")[:EXAMPLES]  # fooled images first
                examples = [{"id": batch.ids[j], "eps_255": eps_255, "fooled": bool(fooled[j]),
                             "clean_png": png_base64(x[j]), "adv_png": png_base64(x_adv[j]),
                             "clean_saliency_png": heat_png(x[j], clean_map[j]),
                             "adv_saliency_png": heat_png(x_adv[j], adv_map[j]),
                             "inside_clean": None if inside is None else float(inside[0][j]),
                             "inside_adv": None if inside is None else float(inside[1][j])} for j in order]
            task.advance(1)
    return {
        "method": f"integrated gradients (captum), black baseline, {IG_STEPS} steps, predicted class",
        "attack": f"{attack.title} ({config.budget} budget, native)", "n": int(len(chosen)),
        "sample_indices": chosen.tolist(), "has_masks": mask is not None, "per_eps": rows, "examples": examples,
        "note": ("Every explained image is attacked at every eps, fooled or not; means are over all of them."),
    }

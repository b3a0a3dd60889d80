"""Images the engine puts into results.json: gallery thumbnails and segmentation contour
overlays, as base64 PNG. Reporters only place them; their colours are named here so the
report's legend and the pictures agree."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch
from PIL import Image

# Colour-blind-safe (Okabe-Ito) contour colours, also named in the report legend.
GROUND_TRUTH_COLOUR = "#F0E442"  # yellow
CLEAN_COLOUR = "#56B4E9"  # sky blue
ADVERSARIAL_COLOUR = "#D55E00"  # vermilion
ROI_COLOUR = "#FFFFFF"  # dotted
CONTOUR_LEGEND = (
    {"key": "ground_truth", "label": "ground truth", "colour": GROUND_TRUTH_COLOUR},
    {"key": "clean", "label": "clean prediction (dashed)", "colour": CLEAN_COLOUR},
    {"key": "adversarial", "label": "adversarial prediction", "colour": ADVERSARIAL_COLOUR},
    {"key": "roi", "label": "region of interest (dotted)", "colour": ROI_COLOUR},
)


def png_base64(image: torch.Tensor, max_side: int = 160) -> str:
    """A (C,H,W) image in [0,1] as a base64 PNG for the report gallery."""
    arr = (image.detach().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    img = Image.fromarray(arr)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.NEAREST)
    elif max(img.size) < 96:
        factor = max(1, 96 // max(img.size))
        img = img.resize((img.size[0] * factor, img.size[1] * factor), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure(width_in: float, height_in: float, dpi: float = 100) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def overlay_png(image: np.ndarray, target: np.ndarray, clean_pred: np.ndarray, adv_pred: np.ndarray,
                roi: np.ndarray | None = None, min_side: int = 256, max_side: int = 512) -> str:
    """Contours of ``target`` (ground truth), ``clean_pred`` and ``adv_pred`` (foreground = any
    class > 0, (H, W)) over ``image`` ((C, H, W) in [0, 1]), as a base64 PNG whose longer side
    lies in [min_side, max_side] pixels."""
    image = np.asarray(image, dtype=np.float32)
    h, w = target.shape
    scale = min(max(min_side / max(h, w), 1.0), max_side / max(h, w))
    dpi = 100
    fig = figure(w * scale / dpi, h * scale / dpi, dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(image[:3].transpose(1, 2, 0), 0, 1), interpolation="nearest")
    ax.grid(False)
    width = 1.6 if scale > 1 else 1.0  # points; the same on a 32 px lesion and a 576 px fundus
    if roi is not None and 0 < roi.sum() < roi.size:
        ax.contour(roi.astype(np.float32), levels=[0.5], colors=[ROI_COLOUR], linewidths=0.8, linestyles="dotted")
    # adversarial first and ground truth last, so the reference stays visible where they overlap
    for mask, colour, style in ((adv_pred, ADVERSARIAL_COLOUR, "solid"), (clean_pred, CLEAN_COLOUR, "dashed"),
                                (target, GROUND_TRUTH_COLOUR, "solid")):
        fg = (np.asarray(mask) > 0).astype(np.float32)
        if 0 < fg.sum() < fg.size:
            ax.contour(fg, levels=[0.5], colors=[colour], linewidths=width, linestyles=style)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")

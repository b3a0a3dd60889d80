"""Segmentation figures: contour overlays (PNG) and metric-vs-eps curves (SVG)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from auditor.imagery import ADVERSARIAL_COLOUR, overlay_png
from auditor.reporting.plots_segmentation import metric_vs_eps_svg, segmentation_figures


def masks(size: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    disc = lambda r: ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r**2).astype(np.uint8)  # noqa: E731
    image = np.full((3, size, size), 0.4, dtype=np.float32)
    return image, disc(10), disc(9), disc(4)


def test_overlay_is_a_png_scaled_up_and_deterministic():
    image, truth, clean, adv = masks()
    encoded = overlay_png(image, truth, clean, adv)
    picture = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert picture.format == "PNG" and picture.size == (256, 256)  # 40 px scaled up to the 256 px minimum
    assert encoded == overlay_png(image, truth, clean, adv)
    rgb = np.asarray(picture.convert("RGB")).reshape(-1, 3)
    red = tuple(int(ADVERSARIAL_COLOUR[i:i + 2], 16) for i in (1, 3, 5))
    assert (np.abs(rgb.astype(int) - red).sum(1) < 60).any(), "the adversarial contour is drawn"


def test_overlay_of_a_large_grey_image_is_capped():
    image = np.full((1, 576, 560), 0.5, dtype=np.float32)
    empty = np.zeros((576, 560), dtype=np.uint8)
    picture = Image.open(io.BytesIO(base64.b64decode(overlay_png(image, empty, empty, empty, roi=empty + 1))))
    assert max(picture.size) == 512


def results_stub() -> dict:
    attacks = []
    for name, title, values in (("seg-pgd-bce", "PGD (BCE loss)", (0.6, 0.3)), ("seg-pgd-dice", "PGD <Dice>", (0.5, 0.2))):
        for eps, value in zip((2.0, 8.0), values):
            attacks.append({"attack": name, "title": title, "eps_255": eps, "dice": value, "iou": value / 2,
                            "missed_rate": 1 - value})
    worst = [{"eps_255": 2.0, "dice": 0.5, "iou": 0.25, "missed_rate": 0.5},
             {"eps_255": 8.0, "dice": 0.2, "iou": 0.1, "missed_rate": 0.8}]
    return {"clean": {"dice": 0.8, "iou": 0.7, "missed_rate": 0.0}, "attacks": attacks, "worst_case": worst}


def test_curves_are_inline_svg_with_an_accessible_name():
    svg, alt = metric_vs_eps_svg(results_stub(), "dice")
    assert svg.startswith("<svg") and 'class="chart"' in svg and "<metadata>" not in svg
    assert "0.800" in alt and "0.200 at 8/255" in alt
    assert "PGD (BCE loss)" in svg and "PGD &lt;Dice&gt;" in svg and "<Dice>" not in svg  # text is escaped
    assert 'id="fig-seg-dice-' in svg
    assert svg == metric_vs_eps_svg(results_stub(), "dice")[0]


def test_figures_for_the_report():
    figures = segmentation_figures(results_stub())
    assert set(figures) == {"dice", "iou", "missed_rate"}
    assert all(f["svg"].__html__().startswith("<svg") and f["caption"] and f["alt"] for f in figures.values())
    assert segmentation_figures({"clean": {"dice": 0.9}, "attacks": []}) == {}

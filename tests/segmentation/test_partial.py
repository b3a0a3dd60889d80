"""The segmentation section of the report renders a finished (and an unfinished) audit
from results.json alone, with the Table-5 layout and escaped text."""

from __future__ import annotations

import copy

import pytest

from auditor.audit import run_audit
from auditor.reporting.plots_segmentation import segmentation_figures
from tests.segmentation.conftest import seg_config

rendering = pytest.importorskip("auditor.reporting.environment")
report_context = pytest.importorskip("auditor.reporting.context")


def render(results: dict) -> str:
    context = report_context.build_context(results)
    context.setdefault("seg_figures", segmentation_figures(results))
    env = rendering.make_environment()
    return env.get_template("partials/segmentation.html.jinja").render(**context)


@pytest.fixture
def results(threshold_model, seg_data, tmp_path, registry) -> dict:
    return run_audit(seg_config(threshold_model, seg_data, tmp_path / "out", attacks=["seg-fgsm-bce", "seg-pgd-dice"]),
                     registry)


def test_table5_layout_figures_and_overlays(results):
    html = render(results)
    assert "Table 1. IoU and Dice by attack loss" in html
    assert html.count('<th class="num">IoU</th><th class="num">Dice</th>') == 3  # clean, 2/255, 8/255
    for entry in results["attacks"]:
        assert f'{entry["dice"]:.3f}' in html and f'{entry["iou"]:.3f}' in html
    for w in results["worst_case"]:
        assert f'{w["dice"]:.3f}' in html
    assert "FGSM (BCE loss)" in html and "PGD (Dice loss)" in html
    assert html.count("data:image/png;base64,") == 3 * len(results["gallery"])
    assert '<svg role="img"' in html and "Missed lesion:" in html and "Missed by any attack" in html


def test_text_from_results_is_escaped(results):
    hostile = copy.deepcopy(results)
    hostile["gallery"][0]["id"] = "<script>alert(1)</script>"
    hostile["config"]["attacks"][0]["title"] = "<b>bold</b>"
    html = render(hostile)
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html
    assert "<b>bold</b>" not in html


def test_partial_results_render(results):
    partial = copy.deepcopy(results)
    partial["attacks"] = partial["attacks"][:1]
    partial["worst_case"] = partial["worst_case"][:1]
    partial["gallery"] = []
    partial["status"] = "running"
    partial.pop("summary")
    html = render(partial)
    assert "not run" in html and "No overlays were recorded" in html


def test_dice_and_iou_carry_their_intervals(results):
    html = render(results)
    assert "95% confidence interval (percentile bootstrap over images, 2,000 resamples" in html
    for block in [results["clean"], *results["attacks"], *results["worst_case"]]:
        for metric in ("dice", "iou"):
            low, high = block[f"{metric}_ci95"]
            assert f"{low:.3f}&ndash;{high:.3f}" in html


def test_wording_follows_the_modality(threshold_model, seg_data, tmp_path, registry):
    fundus = run_audit(seg_config(threshold_model, seg_data, tmp_path / "fundus", attacks=["seg-fgsm-bce"],
                                  eps_255=[8.0], modality="fundoscopy", checks=False), registry)
    assert fundus["modality"]["structure"] == "vessels"
    html = render(fundus)
    assert "Missed vessels:" in html and "Vessels area (px)" in html and "lesion" not in html.lower()


def test_per_class_table_counts_images_and_labels_pixels(results):
    context = report_context.build_context(results)
    html = rendering.make_environment().get_template("partials/model_data.html.jinja").render(**context)
    assert '<th class="num">Images</th>' in html and "Pixels" in html and "(pixels, all images)" in html
    pixels = results["data"]["per_class_pixels"]["foreground"]
    assert f'<td>foreground</td><td class="num">4</td><td class="num">{pixels:,}</td>' in html

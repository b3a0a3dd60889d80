"""`medaudit run --saliency`: integrated gradients clean vs adversarial, the share of
saliency inside the lesion (masks from a CSV 'mask' column), and the CSV mask column read
as safely as every other listed file."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from auditor.cli import app
from auditor.errors import InputError, UsageError
from auditor.evaluation.saliency import heat_png, inside_fraction, require_captum, saliency_maps, top_overlap
from auditor.interfaces import DataOptions
from auditor.reporting.universal_view import saliency_view
from auditor.results import read_results
from plugins.data.csv_manifest import CsvSource

SIZE = 32


def _centre(size: int = SIZE, radius: int = 8) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((yy - size // 2) ** 2 + (xx - size // 2) ** 2) < radius**2


def test_a_model_that_reads_only_the_centre_has_all_its_saliency_there():
    torch.manual_seed(0)
    centre = _centre()
    weight = torch.randn(2, 3, SIZE, SIZE) * centre  # every weight outside the disc is zero
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * SIZE * SIZE, 2))
    with torch.no_grad():
        model[1].weight.copy_(weight.flatten(1))
    x = torch.rand(4, 3, SIZE, SIZE)
    maps = saliency_maps(model, x, torch.tensor([0, 1, 0, 1]), batch_size=4)
    assert maps.shape == (4, SIZE, SIZE)
    masks = centre.expand(4, SIZE, SIZE)
    assert np.allclose(inside_fraction(maps, masks), 1.0)
    assert np.allclose(inside_fraction(maps, ~masks), 0.0)
    assert np.isnan(inside_fraction(torch.zeros(1, SIZE, SIZE), masks[:1])).all()


def test_top_overlap_and_heat_map():
    a = torch.arange(100.0).reshape(1, 10, 10)
    assert top_overlap(a, a)[0] == 1.0
    assert top_overlap(a, -a)[0] == 0.0  # the opposite ranking shares no top-fifth pixel
    png = heat_png(torch.rand(3, 10, 10), a[0])
    assert isinstance(png, str) and png.isascii() and len(png) > 50


def test_missing_captum_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "captum.attr", None)  # import of captum.attr now fails
    with pytest.raises(UsageError, match="captum"):
        require_captum()


def _csv_with_masks(root, data, n_per_class=4, mask_path=None):
    """A CSV manifest of demo images with centred lesion masks (the demo draws lesions there)."""
    root.mkdir(parents=True)
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rows = ["image,mask,label"]
    for label, name in enumerate(("benign", "melanoma")):
        for path in sorted((data / name).glob("*.png"))[:n_per_class]:
            Image.open(path).save(root / "images" / f"{name}_{path.name}")
            Image.fromarray((_centre(radius=10).numpy() * 255).astype(np.uint8)).save(root / "masks" / f"{name}_{path.name}")
            rows.append(f"images/{name}_{path.name},{mask_path or 'masks/' + name + '_' + path.name},{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def test_csv_mask_column_becomes_the_classifier_roi_and_hostile_paths_are_refused(demo_inputs, tmp_path):
    _, data = demo_inputs
    csv = _csv_with_masks(tmp_path / "ok", data, n_per_class=1)
    options = DataOptions(channels=3, input_size=(SIZE, SIZE))
    batch = CsvSource().open(csv, options).load([0, 1])
    assert batch.roi is not None and batch.roi.shape == (2, SIZE, SIZE) and batch.roi.dtype == torch.bool
    assert int(batch.roi.sum()) == 2 * int(_centre(radius=10).sum())
    (tmp_path / "secret.png").write_bytes(b"outside")
    hostile = _csv_with_masks(tmp_path / "hostile", data, n_per_class=1, mask_path="../secret.png")
    with pytest.raises(InputError):
        CsvSource().open(hostile, options)
    wrong = _csv_with_masks(tmp_path / "wrong", data, n_per_class=1)
    Image.fromarray(np.zeros((7, 9), np.uint8)).save(next((wrong.parent / "masks").glob("*.png")))
    with pytest.raises(InputError):
        CsvSource().open(wrong, options).load([0, 1])


def test_run_with_saliency_reports_the_share_inside_the_lesion(demo_inputs, tmp_path):
    model, data = demo_inputs
    csv = _csv_with_masks(tmp_path / "data", data)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "run", str(model), "--data", str(csv), "--out", str(out), "--input-size", "32", "--budget", "quick",
        "--attacks", "fgsm", "--eps", "2,8", "--skip-checks", "--report-format", "html", "--quiet",
        "--classes", "benign,melanoma", "--saliency", "--saliency-samples", "4"])
    assert result.exit_code == 0, result.output
    sal = read_results(out)["saliency"]
    assert sal["has_masks"] and 0 < sal["n"] <= 4 and [r["eps_255"] for r in sal["per_eps"]] == [2.0, 8.0]
    for row in sal["per_eps"]:
        assert 0.0 <= row["inside_clean"] <= 1.0 and 0.0 <= row["inside_adv"] <= 1.0
        assert row["inside_change"] == pytest.approx(row["inside_adv"] - row["inside_clean"], abs=1e-9)
        assert 0.0 <= row["top_overlap"] <= 1.0 and 0 <= row["n_fooled"] <= row["n"]
    assert sal["examples"] and all(e["clean_saliency_png"] and e["adv_saliency_png"] for e in sal["examples"])
    html = (out / "report.html").read_text()
    assert "Where the model looks" in html and "In lesion, adversarial" in html


def test_hostile_saliency_block_is_dropped_not_inlined():
    view = saliency_view({"saliency": {"per_eps": [{"eps_255": 2, "inside_clean": "<script>", "n": 3}],
                                       "examples": [{"clean_png": "x' onerror='alert(1)", "id": "<b>i</b>"}, 7]}})
    assert view["rows"][0]["inside_clean"] is None and view["rows"][0]["n"] == 3
    (example,) = view["examples"]
    assert example["clean_png"] is None and example["id"] == "<b>i</b>"  # autoescaped by the template
    assert saliency_view({"saliency": {"per_eps": "no"}}) is None

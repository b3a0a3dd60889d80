"""Hostile and broken inputs through ``medaudit run``: one line, the right exit code, no
traceback, nothing that looks like a finished audit.

The corpus itself lives in :mod:`tests.reliability.corpus` (``corpus_table.py`` prints it).
Odd-but-valid inputs (alpha channels, 16-bit and float TIFFs, one class) are audited, and
the tests below pin down how their pixels are scaled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auditor.interfaces import DataOptions
from auditor.registry import get_registry
from auditor.results import read_results
from tests.reliability.corpus import (
    CASES,
    SIZE,
    Case,
    Ctx,
    class_folders,
    invoke,
    manifest,
    rgb,
    run_case,
    write_tiff,
)


def _looks_finished(root: Path) -> list[str]:
    """Files under ``root`` that would pass for the output of a successful audit."""
    found = [str(p) for p in root.rglob("report.*") if p.suffix in (".html", ".pdf")]
    for path in root.rglob("results.json"):
        try:
            if json.loads(path.read_text()).get("status") == "complete":
                found.append(str(path))
        except json.JSONDecodeError:
            found.append(f"{path} (not valid JSON)")
    return found


def test_the_corpus_is_large_and_named_uniquely():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_and_its_exit_code(case: Case, tmp_path, tiny_models):
    outcome = run_case(case, tmp_path, tiny_models)
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.stderr
    lines = outcome.stderr_lines
    assert len(lines) == 1, f"expected one stderr line, got:\n{outcome.stderr}"
    assert lines[0].startswith("medaudit: error: "), lines[0]
    assert case.fragment.lower() in lines[0].lower(), lines[0]
    assert outcome.code == case.code, lines[0]
    assert not _looks_finished(tmp_path)
    assert not (tmp_path / "canary").exists()  # the malicious pickle's payload never ran


# ----------------------------------------------------------------- odd but valid
def _rgba(stem: Path, seed: int) -> None:
    alpha = np.full((SIZE, SIZE, 1), 128, np.uint8)
    Image.fromarray(np.concatenate([rgb(seed), alpha], axis=2)).save(stem.with_suffix(".png"))


def _grey_alpha(stem: Path, seed: int) -> None:
    grey = Image.fromarray(rgb(seed)[:, :, 0])
    Image.merge("LA", [grey, Image.new("L", grey.size, 200)]).save(stem.with_suffix(".png"))


def _png16(stem: Path, seed: int) -> None:
    values = np.random.default_rng(seed).integers(0, 65536, (SIZE, SIZE), dtype=np.uint16)
    Image.fromarray(values).save(stem.with_suffix(".png"))


def _tiff16_rgb(stem: Path, seed: int) -> None:
    write_tiff(stem.with_suffix(".tif"), rgb(seed).astype(np.uint16) * 257)


def _tiff_float_unit(stem: Path, seed: int) -> None:
    write_tiff(stem.with_suffix(".tiff"), rgb(seed).astype(np.float32) / 255.0)


def _tiff_float_hounsfield(stem: Path, seed: int) -> None:
    hu = np.random.default_rng(seed).uniform(-1000, 3000, (SIZE, SIZE)).astype(np.float32)
    write_tiff(stem.with_suffix(".tif"), hu)


def _tiff_int16(stem: Path, seed: int) -> None:
    write_tiff(stem.with_suffix(".tif"), np.random.default_rng(seed).integers(-1024, 3072, (SIZE, SIZE)).astype(np.int16))


ACCEPTED = {
    "rgba-png": _rgba,
    "grey-alpha-png": _grey_alpha,
    "16-bit-png": _png16,
    "16-bit-rgb-tiff": _tiff16_rgb,
    "float32-tiff-in-unit-range": _tiff_float_unit,
    "float32-tiff-hounsfield": _tiff_float_hounsfield,
    "int16-tiff": _tiff_int16,
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_odd_but_valid_images_are_audited(name, tmp_path, tiny_models):
    root = class_folders(tmp_path / "data", write=ACCEPTED[name])
    ctx = Ctx(tmp_path, tiny_models)
    outcome = invoke(ctx.args(tiny_models["tiny"], root, "--report-format", "none"))
    assert outcome.code == 0, outcome.stderr
    assert "error" not in outcome.stderr.lower()
    assert read_results(ctx.out)["status"] == "complete"


def _first_image(root: Path, channels: int = 3) -> np.ndarray:
    dataset = get_registry().get("data_sources", "folder").open(root, DataOptions(channels=channels))
    return dataset.load([0]).images[0].numpy()  # (C, H, W) as the model receives it


def test_pixel_scaling_of_high_bit_depth_and_float_images(tmp_path):
    """16-bit: /65535; floats in [0, 1]: kept; other floats and signed ints: min-max."""
    ramp = np.linspace(0, 1, SIZE * SIZE, dtype=np.float64).reshape(SIZE, SIZE)
    cases = {
        "png16": (lambda p: Image.fromarray((ramp * 65535).round().astype(np.uint16)).save(p.with_suffix(".png")), ramp),
        "tif16": (lambda p: write_tiff(p.with_suffix(".tif"), (ramp * 65535).round().astype(np.uint16)), ramp),
        "unit": (lambda p: write_tiff(p.with_suffix(".tif"), (ramp * 0.5).astype(np.float32)), ramp * 0.5),
        "hu": (lambda p: write_tiff(p.with_suffix(".tif"), (ramp * 4000 - 1000).astype(np.float32)), ramp),
        "int16": (lambda p: write_tiff(p.with_suffix(".tif"), (ramp * 4000 - 1000).round().astype(np.int16)), ramp),
    }
    for name, (write, expected) in cases.items():
        root = tmp_path / name
        for label in ("a", "b"):
            (root / label).mkdir(parents=True)
            write(root / label / "x")
        image = _first_image(root, channels=1)[0]
        np.testing.assert_allclose(image, expected, atol=1e-3, err_msg=name)


def test_alpha_is_dropped_not_blended(tmp_path):
    colour = rgb(3)
    root = class_folders(tmp_path / "d", write=lambda stem, seed: _rgba(stem, 3))
    np.testing.assert_allclose(_first_image(root), colour.transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_one_class_data_set_is_audited_with_a_warning(tmp_path, tiny_models):
    """Decided: a warning in results.json, not an error: auditing the melanomas of a set
    on their own is legitimate, but the accuracy then says nothing about the other class."""
    data = manifest(tmp_path / "csv", "image,label\na.png,benign\nb.png,benign\n")
    ctx = Ctx(tmp_path, tiny_models)
    outcome = invoke(ctx.args(tiny_models["tiny"], data, "--classes", "benign,melanoma", "--report-format", "none"))
    assert outcome.code == 0, outcome.stderr
    results = read_results(ctx.out)
    assert results["status"] == "complete"
    assert any("single class" in w for w in results["warnings"])
    assert results["data"]["per_class_counts"] == {"benign": 2, "melanoma": 0}


def test_a_one_class_folder_tree_needs_the_format_named(tmp_path, tiny_models):
    root = tmp_path / "tree"
    class_folders(tmp_path / "both")
    (root / "benign").mkdir(parents=True)
    for png in (tmp_path / "both" / "benign").iterdir():
        (root / "benign" / png.name).write_bytes(png.read_bytes())
    ctx = Ctx(tmp_path, tiny_models)
    refused = invoke(ctx.args(tiny_models["tiny"], root, "--report-format", "none"))
    assert refused.code == 3 and "--data-format" in refused.stderr_lines[0]
    named = invoke(ctx.args(tiny_models["tiny"], root, "--report-format", "none", "--data-format", "folder"))
    assert named.code == 0, named.stderr
    assert any("single class" in w for w in read_results(ctx.out)["warnings"])

"""The ``seg-folders`` source: images/ + masks/ (+ fov/) paired by stem."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from auditor.datasets import open_dataset
from auditor.errors import InputError, UsageError
from auditor.interfaces import DataOptions
from auditor.registry import Registry

SEG = DataOptions(task="segmentation", channels=1)


@pytest.fixture
def seg_root(tmp_path: Path, write_array: Callable[[Path, np.ndarray], Path]) -> Path:
    root = tmp_path / "seg"
    for i in range(3):
        write_array(root / "images" / f"{i:02d}.png", np.full((6, 5, 3), 40 * i, dtype=np.uint8))
        mask = np.zeros((6, 5), dtype=np.uint8)
        mask[: i + 1] = 255
        write_array(root / "vessels" / f"{i:02d}.png", mask)
    write_array(root / "vessels" / "99.png", np.zeros((6, 5), dtype=np.uint8))  # extra mask: ignored
    return root


def test_pairs_by_stem_and_binarises(registry: Registry, seg_root: Path) -> None:
    ds = open_dataset(registry, seg_root, SEG)
    assert ds.format == "seg-folders" and ds.ids() == ["images/00.png", "images/01.png", "images/02.png"]
    assert ds.describe()["has_roi"] is False and ds.targets().tolist() == [0, 0, 0]
    batch = ds.load([2, 0])
    assert tuple(batch.images.shape) == (2, 1, 6, 5) and batch.targets.dtype == torch.int64
    assert batch.targets.sum(dim=(1, 2)).tolist() == [15, 5] and batch.targets.max().item() == 1
    assert batch.roi is None


def test_fov_folder_becomes_the_roi(registry: Registry, seg_root: Path, write_array: Callable[..., Path]) -> None:
    for i in range(3):
        fov = np.zeros((6, 5), dtype=np.uint8)
        fov[1:-1, 1:-1] = 255
        write_array(seg_root / "fov" / f"{i:02d}.png", fov)
    ds = open_dataset(registry, seg_root, SEG)
    assert ds.describe()["has_roi"] is True and ds.describe()["roi_dir"] == "fov"
    batch = ds.load([0, 1])
    assert batch.roi is not None and batch.roi.dtype == torch.bool
    assert batch.roi.sum(dim=(1, 2)).tolist() == [12, 12]
    (seg_root / "fov" / "01.png").unlink()
    with pytest.raises(InputError, match=r"no ROI mask for image 'images/01.png'"):
        open_dataset(registry, seg_root, SEG)


def test_missing_mask_and_size_mismatch(registry: Registry, seg_root: Path, write_array: Callable[..., Path]) -> None:
    write_array(seg_root / "vessels" / "01.png", np.zeros((7, 5), dtype=np.uint8))
    ds = open_dataset(registry, seg_root, SEG)
    with pytest.raises(InputError, match=r"'vessels/01.png' is 7x5 but its image 'images/01.png' is 6x5"):
        ds.load([1])
    (seg_root / "vessels" / "02.png").unlink()
    with pytest.raises(InputError, match=r"no mask for image 'images/02.png' in 'vessels/'"):
        open_dataset(registry, seg_root, SEG)


def test_mask_dir_option_and_mask_values(registry: Registry, tmp_path: Path, write_array: Callable[..., Path]) -> None:
    root = tmp_path / "multi"
    write_array(root / "images" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    write_array(root / "organs" / "a.png", np.array([[0, 0, 100, 100], [0, 0, 100, 100], [200] * 4, [200] * 4], dtype=np.uint8))
    options = DataOptions(task="segmentation", extra={"mask_dir": "organs", "mask_values": [0, 100, 200]})
    ds = open_dataset(registry, root, options)
    assert ds.class_names == ["background", "class_1", "class_2"]
    assert ds.load([0]).targets[0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]]
    resized = open_dataset(registry, root, DataOptions(**{**options.__dict__, "input_size": (8, 8)})).load([0])
    assert set(resized.targets.unique().tolist()) == {0, 1, 2}


def test_detect_needs_segmentation_and_a_mask_folder(registry: Registry, seg_root: Path) -> None:
    seg = registry.get("data_sources", "seg-folders")
    assert seg.detect(seg_root, SEG)
    assert not seg.detect(seg_root, DataOptions())
    assert not seg.detect(seg_root / "images", SEG)


def test_split_subfolder(registry: Registry, seg_root: Path, tmp_path: Path) -> None:
    seg_root.rename(tmp_path / "test")
    (tmp_path / "top").mkdir()
    (tmp_path / "test").rename(tmp_path / "top" / "test")
    ds = open_dataset(registry, tmp_path / "top", DataOptions(task="segmentation", split="test"))
    assert len(ds) == 3


def test_palette_masks_keep_their_indices(registry: Registry, tmp_path: Path, write_array: Callable[..., Path]) -> None:
    root = tmp_path / "pal"
    write_array(root / "images" / "a.png", np.zeros((2, 3), dtype=np.uint8))
    mask = Image.fromarray(np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8), mode="P")
    mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])  # class colours: black, red, green
    (root / "labels").mkdir()
    mask.save(root / "labels" / "a.png")
    options = DataOptions(task="segmentation", classes=["bg", "tumour", "oedema"])
    assert open_dataset(registry, root, options).load([0]).targets[0].tolist() == [[0, 1, 2], [2, 1, 0]]
    text = DataOptions(task="segmentation", extra={"mask_values": "0, 2"})
    with pytest.raises(InputError, match=r"mask 'labels/a.png' has values \[1.0\] that are not in mask_values"):
        open_dataset(registry, root, text).load([0])
    with pytest.raises(UsageError, match="mask_values must be pixel values"):
        open_dataset(registry, root, DataOptions(task="segmentation", extra={"mask_values": "a,b"}))

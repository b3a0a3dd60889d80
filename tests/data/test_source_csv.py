"""The ``csv`` source: manifests with paths relative to the CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from auditor.datasets import open_dataset
from auditor.errors import InputError
from auditor.interfaces import DataOptions
from auditor.registry import Registry


@pytest.fixture
def manifest(tmp_path: Path, make_image: Callable[..., Path]) -> Path:
    root = tmp_path / "set"
    for i in range(6):
        make_image(root / "images" / f"{i}.png", value=i)
    rows = ["image,label,split,diagnosis"]
    rows += [f"images/{i}.png,{int(i >= 4) + int(i == 5)},{'val' if i % 2 else 'train'},nevus" for i in range(6)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_integer_labels_split_and_classes_from_whole_file(registry: Registry, manifest: Path) -> None:
    ds = open_dataset(registry, manifest, DataOptions(split="val"))
    assert ds.format == "csv"
    assert ds.ids() == ["images/1.png", "images/3.png", "images/5.png"]
    assert ds.targets().tolist() == [0, 0, 2]
    # Class 1 only occurs in the train split, yet the val set still has three classes.
    assert ds.class_names == ["0", "1", "2"]
    assert ds.describe()["per_class_counts"] == {"0": 2, "1": 0, "2": 1}
    batch = ds.load([2])
    assert batch.targets.tolist() == [2] and float(batch.images.max()) == pytest.approx(5 / 255)
    assert len(open_dataset(registry, manifest, DataOptions())) == 6


def test_folder_with_one_csv_is_read_as_that_csv(registry: Registry, manifest: Path) -> None:
    ds = open_dataset(registry, manifest.parent, DataOptions(split="train"))
    assert ds.format == "csv" and len(ds) == 3


def test_string_labels_sorted_or_in_classes_order(registry: Registry, tmp_path: Path, make_image: Callable[..., Path]) -> None:
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    csv = write_csv(tmp_path / "m.csv", "image,label\na.png,nevus\nb.png,melanoma\n")
    ds = open_dataset(registry, csv, DataOptions())
    assert ds.class_names == ["melanoma", "nevus"] and ds.targets().tolist() == [1, 0]
    ds = open_dataset(registry, csv, DataOptions(classes=["nevus", "melanoma"]))
    assert ds.targets().tolist() == [0, 1]
    with pytest.raises(InputError, match=r"line 3 of 'm.csv': label 'melanoma' is not one of --classes \(nevus, other\)"):
        open_dataset(registry, csv, DataOptions(classes=["nevus", "other"]))


def test_label_outside_classes_range(registry: Registry, manifest: Path) -> None:
    with pytest.raises(InputError, match=r"line 7 of 'labels.csv': label 2 is outside 0..1"):
        open_dataset(registry, manifest, DataOptions(classes=["benign", "malignant"]))


def test_missing_columns_are_named(registry: Registry, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "m.csv", "file,diagnosis\na.png,x\n")
    with pytest.raises(InputError, match=r"CSV 'm.csv' has no 'image', 'label' column \(columns: file, diagnosis\)"):
        open_dataset(registry, csv, DataOptions())
    with pytest.raises(InputError, match=r"has no 'image', 'mask' column"):
        open_dataset(registry, csv, DataOptions(task="segmentation"))


@pytest.mark.parametrize("bad", ["../outside.png", "/etc/passwd.png", "images/../../x.png", r"C:\data\x.png"])
def test_paths_may_not_leave_the_csv_folder(registry: Registry, tmp_path: Path, bad: str) -> None:
    (tmp_path / "inner").mkdir()
    csv = write_csv(tmp_path / "inner" / "m.csv", f"image,label\n{bad},0\n")
    with pytest.raises(InputError, match=r"line 2 of 'm.csv': image path .* is outside the CSV's folder"):
        open_dataset(registry, csv, DataOptions())


def test_missing_image_and_empty_label(registry: Registry, tmp_path: Path, make_image: Callable[..., Path]) -> None:
    make_image(tmp_path / "a.png")
    csv = write_csv(tmp_path / "m.csv", "image,label\na.png,0\nb.png,1\n")
    with pytest.raises(InputError, match=r"line 3 of 'm.csv': image file 'b.png' does not exist"):
        open_dataset(registry, csv, DataOptions())
    csv = write_csv(tmp_path / "e.csv", "image,label\na.png,\n")
    with pytest.raises(InputError, match=r"line 2 of 'e.csv': the label is empty"):
        open_dataset(registry, csv, DataOptions())


def test_split_errors(registry: Registry, manifest: Path, tmp_path: Path, make_image: Callable[..., Path]) -> None:
    with pytest.raises(InputError, match=r"has no rows in split 'test' \(splits: train, val\)"):
        open_dataset(registry, manifest, DataOptions(split="test"))
    make_image(tmp_path / "a.png")
    csv = write_csv(tmp_path / "m.csv", "image,label\na.png,0\n")
    with pytest.raises(InputError, match=r"has no 'split' column; drop --split"):
        open_dataset(registry, csv, DataOptions(split="val"))


def test_empty_manifest(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="data set is empty"):
        open_dataset(registry, write_csv(tmp_path / "m.csv", "image,label\n"), DataOptions())


def test_segmentation_manifest_with_roi(registry: Registry, tmp_path: Path, make_image: Callable[..., Path]) -> None:
    for i in range(2):
        make_image(tmp_path / "img" / f"{i}.png", size=(6, 8), mode="RGB")
        mask = np.zeros((6, 8), dtype=np.uint8)
        mask[:, : 2 + i] = 255
        Path(tmp_path / "msk").mkdir(exist_ok=True)
        Image.fromarray(mask).save(tmp_path / "msk" / f"{i}.png")
        roi = np.zeros((6, 8), dtype=np.uint8)
        roi[1:5] = 1
        Path(tmp_path / "roi").mkdir(exist_ok=True)
        Image.fromarray(roi).save(tmp_path / "roi" / f"{i}.png")
    csv = write_csv(
        tmp_path / "seg.csv",
        "image,mask,roi,label\nimg/0.png,msk/0.png,roi/0.png,1\nimg/1.png,msk/1.png,roi/1.png,0\n",
    )
    ds = open_dataset(registry, csv, DataOptions(task="segmentation"))
    assert ds.task == "segmentation" and ds.class_names == ["background", "foreground"]
    assert ds.targets().tolist() == [0, 0] and ds.describe()["has_roi"] is True
    batch = ds.load([0, 1])
    assert tuple(batch.targets.shape) == (2, 6, 8) and batch.targets.dtype == torch.int64
    assert batch.targets.sum(dim=(1, 2)).tolist() == [12, 18]
    assert batch.roi is not None and batch.roi.dtype == torch.bool
    assert batch.roi.sum().item() == 2 * 4 * 8
    resized = open_dataset(registry, csv, DataOptions(task="segmentation", input_size=(12, 16))).load([1])
    assert resized.targets.sum().item() == 18 * 4 and tuple(resized.roi.shape) == (1, 12, 16)

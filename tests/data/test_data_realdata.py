"""The built-in sources on the real data sets in ../shared/data (skipped when absent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from auditor import imaging
from auditor.datasets import open_dataset
from auditor.interfaces import DataOptions
from auditor.registry import Registry

pytestmark = pytest.mark.realdata


def test_isic2017_val_split(registry: Registry, shared_data: Path) -> None:
    ds = open_dataset(registry, shared_data / "isic2017" / "labels.csv", DataOptions(split="val", input_size=(64, 64)))
    assert ds.format == "csv" and len(ds) == 150
    assert ds.describe()["per_class_counts"] == {"0": 120, "1": 30}
    batch = ds.load([0, 149])
    assert tuple(batch.images.shape) == (2, 3, 64, 64) and batch.ids[0].startswith("images/ISIC_")
    assert 0.0 <= float(batch.images.min()) and float(batch.images.max()) <= 1.0
    limited = open_dataset(registry, shared_data / "isic2017", DataOptions(split="val", limit=20, seed=0))
    assert limited.describe()["per_class_counts"] == {"0": 16, "1": 4}


def test_cxr16_class_folders(registry: Registry, shared_data: Path) -> None:
    ds = open_dataset(registry, shared_data / "cxr16", DataOptions(channels=1, input_size=(128, 128)))
    assert ds.format == "folder" and ds.class_names == ["NORMAL", "PNEUMONIA"]
    assert ds.describe()["per_class_counts"] == {"NORMAL": 8, "PNEUMONIA": 8}
    batch = ds.load([0, 15])
    assert tuple(batch.images.shape) == (2, 1, 128, 128) and batch.targets.tolist() == [0, 1]


def test_pneumoniamnist_test_split(registry: Registry, shared_data: Path) -> None:
    path = shared_data / "medmnist" / "pneumoniamnist.npz"
    ds = open_dataset(registry, path, DataOptions(channels=1))
    assert len(ds) == 624 and ds.describe()["per_class_counts"] == {"normal": 234, "pneumonia": 390}
    assert ds.describe()["class_names_source"] == "MedMNIST v2 metadata (pneumoniamnist)"
    with np.load(path) as raw:
        expected = raw["test_images"][[0, 623]] / 255.0
    np.testing.assert_allclose(ds.load([0, 623]).images[:, 0].numpy(), expected, atol=1e-6)


def test_breastmnist_flat_labels(registry: Registry, shared_data: Path) -> None:
    ds = open_dataset(registry, shared_data / "medmnist" / "breastmnist.npz", DataOptions(split="val"))
    assert len(ds) == 78 and ds.targets().shape == (78,)
    assert sum(ds.describe()["per_class_counts"].values()) == 78
    assert ds.class_names == ["malignant", "normal, benign"]  # MedMNIST's labels: 0 is the disease here
    assert tuple(ds.load(range(4)).images.shape) == (4, 3, 28, 28)


@pytest.mark.parametrize("name, shape", [("CT_small.dcm", (128, 128, 1)), ("MR_small.dcm", (64, 64, 1))])
def test_single_dicoms(registry: Registry, shared_data: Path, tmp_path: Path, name: str, shape: tuple) -> None:
    pixels = imaging.read_image(shared_data / "singles" / name, name)
    # shown as a viewer shows it: a file's window maps to [0, 1] (tests/data/test_dicom_display.py),
    # so a windowed image need not reach both ends
    assert pixels.shape == shape and 0.0 <= pixels.min() < pixels.max() <= 1.0
    for cls in ("a", "b"):  # a class-folder set made of the shared DICOMs (copied to tmp only)
        (tmp_path / cls).mkdir()
        shutil.copy(shared_data / "singles" / name, tmp_path / cls / name)
    ds = open_dataset(registry, tmp_path, DataOptions(channels=3))
    batch = ds.load([0, 1])
    assert tuple(batch.images.shape) == (2, 3, *shape[:2]) and torch.equal(batch.images[0], batch.images[1])


def test_drive_preprocessed_with_fov(registry: Registry, shared_data: Path) -> None:
    ds = open_dataset(registry, shared_data / "drive_preprocessed" / "test", DataOptions(task="segmentation", channels=1))
    assert ds.format == "seg-folders" and len(ds) == 20 and ds.describe()["has_roi"] is True
    batch = ds.load([0, 19])
    assert tuple(batch.images.shape) == (2, 1, 576, 560)
    assert tuple(batch.targets.shape) == (2, 576, 560) and set(batch.targets.unique().tolist()) == {0, 1}
    assert batch.roi is not None and tuple(batch.roi.shape) == (2, 576, 560)
    inside = batch.roi.float().mean().item()
    assert 0.5 < inside < 0.9  # the field of view is a disc inside the frame
    # The FOV really belongs to these masks: almost no vessel pixel lies outside it.
    outside = batch.targets[~batch.roi].sum().item()
    assert outside < 0.01 * batch.targets.sum().item()


def test_ph2_segmentation_manifest(registry: Registry, shared_data: Path) -> None:
    ds = open_dataset(registry, shared_data / "ph2" / "labels.csv", DataOptions(task="segmentation"))
    assert ds.format == "csv" and len(ds) == 200 and ds.class_names == ["background", "foreground"]
    batch = ds.load([0])
    assert tuple(batch.images.shape) == (1, 3, 288, 384) and tuple(batch.targets.shape) == (1, 288, 384)
    assert 0 < batch.targets.float().mean().item() < 1
    classification = open_dataset(registry, shared_data / "ph2", DataOptions())
    assert classification.class_names == ["0", "1", "2"] and len(classification) == 200


def test_lung4_masks(registry: Registry, shared_data: Path) -> None:
    ds = open_dataset(registry, shared_data / "lung4", DataOptions(task="segmentation", channels=1, input_size=(128, 128)))
    batch = ds.load(range(4))
    assert tuple(batch.targets.shape) == (4, 128, 128) and batch.roi is None
    assert set(batch.targets.unique().tolist()) == {0, 1}

"""The ``folder`` source: class-per-folder trees."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from auditor import imaging
from auditor.datasets import open_dataset
from auditor.errors import InputError
from auditor.interfaces import DataOptions
from auditor.registry import Registry


@pytest.fixture
def tree(tmp_path: Path, make_image: Callable[..., Path]) -> Path:
    root = tmp_path / "tree"
    for i in range(3):
        make_image(root / "benign" / f"b{i}.png", value=10 * i)
    for i in range(2):
        make_image(root / "malignant" / f"m{i}.jpg", value=200, mode="RGB")
    (root / "malignant" / ".DS_Store").write_bytes(b"junk")
    return root


def test_classes_labels_and_ids(registry: Registry, tree: Path) -> None:
    ds = open_dataset(registry, tree, DataOptions(channels=1))
    assert ds.format == "folder" and len(ds) == 5
    assert ds.class_names == ["benign", "malignant"]
    assert ds.ids() == ["benign/b0.png", "benign/b1.png", "benign/b2.png", "malignant/m0.jpg", "malignant/m1.jpg"]
    assert ds.targets().tolist() == [0, 0, 0, 1, 1]
    assert ds.describe()["per_class_counts"] == {"benign": 3, "malignant": 2}
    batch = ds.load([1, 4])
    assert tuple(batch.images.shape) == (2, 1, 8, 10) and batch.images.dtype.is_floating_point
    assert batch.targets.tolist() == [0, 1] and batch.ids == ["benign/b1.png", "malignant/m1.jpg"]
    assert batch.indices.tolist() == [1, 4] and batch.roi is None
    assert float(batch.images[0].max()) == pytest.approx(10 / 255)
    assert float(batch.images[1].mean()) == pytest.approx(200 / 255, abs=0.02)  # JPEG is lossy


def test_open_and_targets_decode_nothing(registry: Registry, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[str] = []
    real = imaging.read_image
    monkeypatch.setattr(imaging, "read_image", lambda p, n: decoded.append(n) or real(p, n))
    ds = open_dataset(registry, tree, DataOptions())
    ds.targets(), ds.describe(), ds.fingerprint()
    assert decoded == []
    ds.load([2])
    assert decoded == ["benign/b2.png"]


def test_classes_option_sets_the_order(registry: Registry, tree: Path) -> None:
    ds = open_dataset(registry, tree, DataOptions(classes=["malignant", "benign"]), source="folder")
    assert ds.targets().tolist() == [1, 1, 1, 0, 0]
    with pytest.raises(InputError, match=r"do not match --classes \(benign, other\)"):
        open_dataset(registry, tree, DataOptions(classes=["benign", "other"]), source="folder")


def test_stray_file_fails_at_open_naming_it(registry: Registry, tree: Path) -> None:
    (tree / "benign" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"'benign/notes.txt' is not a supported image"):
        open_dataset(registry, tree, DataOptions())


def test_corrupt_image_fails_at_load_naming_it(registry: Registry, tree: Path) -> None:
    (tree / "benign" / "b1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ds = open_dataset(registry, tree, DataOptions())
    ds.load([0])
    with pytest.raises(InputError, match=r"'benign/b1.png'"):
        ds.load([0, 1])


def test_mixed_sizes_need_an_input_size(registry: Registry, tree: Path, make_image: Callable[..., Path]) -> None:
    make_image(tree / "malignant" / "m2.png", size=(12, 10))
    ds = open_dataset(registry, tree, DataOptions())
    with pytest.raises(InputError, match=r"image 'malignant/m2.png' is 12x10 but 'benign/b0.png' is 8x10"):
        ds.load([0, 5])
    resized = open_dataset(registry, tree, DataOptions(input_size=(6, 7))).load([0, 5])
    assert tuple(resized.images.shape) == (2, 3, 6, 7)


def test_dicom_in_a_class_folder(registry: Registry, tree: Path) -> None:
    shutil.copy(get_testdata_file("CT_small.dcm"), tree / "malignant" / "ct.dcm")
    ds = open_dataset(registry, tree, DataOptions(channels=1, input_size=(16, 16)))
    index = ds.ids().index("malignant/ct.dcm")
    batch = ds.load([index])
    assert tuple(batch.images.shape) == (1, 1, 16, 16) and batch.targets.tolist() == [1]
    assert 0.0 <= float(batch.images.min()) < float(batch.images.max()) <= 1.0


def test_limit_is_stratified_seeded_and_sorted(registry: Registry, tmp_path: Path, make_image: Callable[..., Path]) -> None:
    root = tmp_path / "t"
    for i in range(20):
        make_image(root / "common" / f"c{i:02d}.png")
    for i in range(2):
        make_image(root / "rare" / f"r{i}.png")
    a = open_dataset(registry, root, DataOptions(limit=5, seed=1))
    b = open_dataset(registry, root, DataOptions(limit=5, seed=1))
    assert len(a) == 5 and a.ids() == b.ids() and a.ids() == sorted(a.ids())
    assert a.describe()["per_class_counts"] == {"common": 4, "rare": 1}
    others = {tuple(open_dataset(registry, root, DataOptions(limit=5, seed=s)).ids()) for s in range(6)}
    assert len(others) > 1
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != open_dataset(registry, root, DataOptions(limit=5, seed=2)).fingerprint()


def test_fingerprint_follows_content(registry: Registry, tree: Path, make_image: Callable[..., Path]) -> None:
    before = open_dataset(registry, tree, DataOptions()).fingerprint()
    assert len(before) == 64
    make_image(tree / "benign" / "b0.png", size=(30, 30), value=3)
    assert open_dataset(registry, tree, DataOptions()).fingerprint() != before


def test_split_subfolder_and_empty_tree(registry: Registry, tmp_path: Path, make_image: Callable[..., Path]) -> None:
    make_image(tmp_path / "ds" / "test" / "a" / "1.png")
    make_image(tmp_path / "ds" / "test" / "b" / "2.png")
    ds = open_dataset(registry, tmp_path / "ds", DataOptions(split="test"))
    assert ds.ids() == ["a/1.png", "b/2.png"]
    with pytest.raises(InputError, match=r"has no 'val' sub-folder for --split \(found: test\)"):
        open_dataset(registry, tmp_path / "ds", DataOptions(split="val"), source="folder")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(InputError, match="data set is empty"):
        open_dataset(registry, tmp_path / "empty", DataOptions(), source="folder")


def test_detect(registry: Registry, tree: Path) -> None:
    folder = registry.get("data_sources", "folder")
    assert folder.detect(tree, DataOptions())
    assert not folder.detect(tree, DataOptions(task="segmentation"))
    (tree / "labels.csv").write_text("image,label\n")
    assert not folder.detect(tree, DataOptions())


def test_single_class_tree_is_allowed_by_name(registry: Registry, tmp_path: Path, make_image: Callable[..., Path]) -> None:
    make_image(tmp_path / "only" / "x" / "1.png")
    ds = open_dataset(registry, tmp_path / "only", DataOptions(), source="folder")
    assert ds.describe()["per_class_counts"] == {"x": 1}
    assert np.array_equal(ds.targets(), [0])

"""The ``npz`` source: MedMNIST archives, read row by row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from auditor.datasets import open_dataset
from auditor.errors import InputError
from auditor.interfaces import DataOptions
from auditor.registry import Registry


def _arrays(rgb: bool = False, column_labels: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", 12), ("test", 9)):
        shape = (n, 5, 4, 3) if rgb else (n, 5, 4)
        out[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        labels = (np.arange(n) % 3 == 0).astype(np.uint8)
        out[f"{split}_labels"] = labels[:, None] if column_labels else labels
    out["train_labels"][-1] = 2  # class 2 exists only in train
    return out


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_rows_match_the_arrays_in_any_order(registry: Registry, tmp_path: Path, save) -> None:
    arrays = _arrays()
    save(tmp_path / "m.npz", **arrays)
    ds = open_dataset(registry, tmp_path / "m.npz", DataOptions(channels=1))
    assert ds.format == "npz" and len(ds) == 9
    assert ds.class_names == ["0", "1", "2"]
    assert ds.targets().tolist() == arrays["test_labels"][:, 0].tolist()
    assert ds.describe()["per_class_counts"] == {"0": 6, "1": 3, "2": 0}
    order = [7, 2, 7, 0, 8]
    batch = ds.load(order)
    assert batch.ids == ["test/7", "test/2", "test/7", "test/0", "test/8"]
    np.testing.assert_allclose(batch.images[:, 0].numpy() * 255, arrays["test_images"][order], atol=1e-4)
    assert batch.targets.tolist() == arrays["test_labels"][order, 0].tolist()


def test_flat_labels_rgb_and_luminance(registry: Registry, tmp_path: Path) -> None:
    arrays = _arrays(rgb=True, column_labels=False)
    np.savez(tmp_path / "m.npz", **arrays)
    ds = open_dataset(registry, tmp_path / "m.npz", DataOptions(channels=1, split="train", input_size=(10, 8)))
    assert ds.targets().tolist() == arrays["train_labels"].tolist()
    batch = ds.load([3])
    assert tuple(batch.images.shape) == (1, 1, 10, 8)
    grey = (arrays["train_images"][3] @ np.array([0.299, 0.587, 0.114])) / 255
    assert float(batch.images.mean()) == pytest.approx(float(grey.mean()), abs=1e-3)
    assert tuple(open_dataset(registry, tmp_path / "m.npz", DataOptions()).load([0]).images.shape) == (1, 3, 5, 4)


def test_missing_split_lists_the_keys(registry: Registry, tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", **_arrays())
    with pytest.raises(
        InputError,
        match=r"'m.npz' has no 'val_images'/'val_labels' arrays \(keys: test_images, test_labels, train_images, train_labels\)",
    ):
        open_dataset(registry, tmp_path / "m.npz", DataOptions(split="val"))


def test_bad_label_shapes_and_ranges(registry: Registry, tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["test_labels"] = np.zeros((9, 4), dtype=np.uint8)
    np.savez(tmp_path / "multi.npz", **arrays)
    with pytest.raises(InputError, match=r"'test_labels' in 'multi.npz' has shape \(9, 4\); only single-label"):
        open_dataset(registry, tmp_path / "multi.npz", DataOptions())
    np.savez(tmp_path / "m.npz", **_arrays())
    with pytest.raises(InputError, match=r"holds labels 0..1 but there are 1 classes"):
        open_dataset(registry, tmp_path / "m.npz", DataOptions(classes=["only"]))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"'junk.npz' is not a readable .npz file"):
        open_dataset(registry, tmp_path / "junk.npz", DataOptions())


def test_limit_and_fingerprint(registry: Registry, tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", **_arrays())
    small = open_dataset(registry, tmp_path / "m.npz", DataOptions(limit=4, seed=3))
    assert len(small) == 4 and small.ids() == sorted(small.ids(), key=lambda s: int(s.split("/")[1]))
    assert sorted(small.describe()["per_class_counts"].values()) == [0, 1, 3]
    full = open_dataset(registry, tmp_path / "m.npz", DataOptions())
    train = open_dataset(registry, tmp_path / "m.npz", DataOptions(split="train"))
    assert len({small.fingerprint(), full.fingerprint(), train.fingerprint()}) == 3
    assert full.fingerprint() == open_dataset(registry, tmp_path / "m.npz", DataOptions()).fingerprint()


def test_detect_only_npz_files_for_classification(registry: Registry, tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", **_arrays())
    npz = registry.get("data_sources", "npz")
    assert npz.detect(tmp_path / "m.npz", DataOptions())
    assert not npz.detect(tmp_path / "m.npz", DataOptions(task="segmentation"))
    assert not npz.detect(tmp_path, DataOptions())

"""auditor.datasets.open_dataset and the shared selection helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from auditor.datasets import open_dataset
from auditor.errors import InputError, UsageError
from auditor.interfaces import DataOptions, DataSource, Dataset
from auditor.registry import Registered, Registry
from plugins.data.common import stratified_subset


def test_registers_the_four_sources(registry: Registry) -> None:
    assert sorted(registry.names("data_sources")) == ["csv", "folder", "npz", "seg-folders"]


def test_missing_path(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"data path '.*nope' does not exist"):
        open_dataset(registry, tmp_path / "nope", DataOptions())


def test_nothing_recognises_the_path(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InputError, match=r"no data format recognises .* name one with --data-format \(folder, csv, npz, seg-folders\)"):
        open_dataset(registry, tmp_path / "x.txt", DataOptions())


def test_unknown_or_unsuitable_explicit_source(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"unknown data format 'parquet'"):
        open_dataset(registry, tmp_path, DataOptions(), source="parquet")
    with pytest.raises(UsageError, match=r"data format 'npz' does not support segmentation"):
        open_dataset(registry, tmp_path, DataOptions(task="segmentation"), source="npz")


def test_bad_options_are_usage_errors(registry: Registry, tmp_path: Path, make_image: Callable[..., Path]) -> None:
    make_image(tmp_path / "a" / "1.png")
    make_image(tmp_path / "b" / "1.png")
    for bad in (DataOptions(channels=2), DataOptions(input_size=(0, 4)), DataOptions(limit=0)):
        with pytest.raises(UsageError):
            open_dataset(registry, tmp_path, bad)


def test_two_claims_are_ambiguous(registry: Registry, tmp_path: Path) -> None:
    class Greedy(DataSource):
        name = "greedy"

        def detect(self, path: Path, options: DataOptions) -> bool:
            return True

        def open(self, path: Path, options: DataOptions) -> Dataset:
            raise AssertionError("not reached")

    registry.components["data_sources"]["greedy"] = Registered("greedy", "test", Greedy())
    np.savez(tmp_path / "m.npz", test_images=np.zeros((1, 2, 2), np.uint8), test_labels=np.zeros(1))
    with pytest.raises(InputError, match=r"matches several data formats \(npz, greedy\)"):
        open_dataset(registry, tmp_path / "m.npz", DataOptions())
    assert open_dataset(registry, tmp_path / "m.npz", DataOptions(), source="npz").format == "npz"


def test_stratified_subset_keeps_rare_classes() -> None:
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    picked = stratified_subset(labels, 10, seed=0)
    assert len(picked) == 10 and np.all(np.diff(picked) > 0)
    assert np.bincount(labels[picked], minlength=3).tolist() == [8, 1, 1]
    assert np.array_equal(picked, stratified_subset(labels, 10, seed=0))
    assert not np.array_equal(picked, stratified_subset(labels, 10, seed=1))
    assert np.array_equal(stratified_subset(labels, 500, seed=0), np.arange(100))
    assert len(stratified_subset(labels, 2, seed=0)) == 2

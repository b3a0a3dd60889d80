"""Streaming: the audit's memory does not grow with the data set, only with the batch size.

Torch tensors are not seen by tracemalloc and RSS is too noisy to compare, so the test
instruments the two places images can pile up: the data set's ``load`` (what is decoded
at once) and the engine's ``SampleCache`` (what is kept). With a cache capped at one byte,
every ``load`` must ask for at most ``batch_size`` samples and the cache must never hold
more than one batch, for a small and a four times larger data set alike.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from auditor.config import AuditConfig
from auditor.demo import CLASSES, make_split
from auditor.engine.cache import SampleCache
from auditor.engine.classification import ClassificationAudit
from auditor.engine.prepare import prepare
from auditor.registry import get_registry

BATCH = 8


class RecordingCache(SampleCache):
    """A SampleCache that remembers its largest size after each load."""

    peak_bytes = 0
    peak_items = 0

    def load(self, indices):
        batch = super().load(indices)
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        self.peak_items = max(self.peak_items, len(self.items))
        return batch


def write_inputs(folder: Path, model: torch.nn.Module, n_per_class: int) -> tuple[Path, Path]:
    images, labels = make_split(n_per_class, seed=2)
    data = folder / "data"
    for name in CLASSES:
        (data / name).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(images, labels)):
        Image.fromarray(img).save(data / CLASSES[label] / f"lesion_{i:03d}.png")
    model_path = folder / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(model_path))
    return model_path, data


def audit_with_tiny_cache(folder: Path, model: torch.nn.Module, n_per_class: int) -> tuple[list[int], RecordingCache, int]:
    model_path, data = write_inputs(folder, model, n_per_class)
    config = AuditConfig(model=model_path, data=data, out=folder / "out", input_size=(32, 32), eps_255=[4, 8],
                         attacks=["fgsm", "pgd"], budget="quick", batch_size=BATCH, formats=[], device="cpu")
    if hasattr(config, "check_samples"):  # the validity checks load data too: keep them, small
        config.check_samples = BATCH
    config.out.mkdir()
    prep = prepare(config, get_registry())
    requested: list[int] = []
    original = prep.dataset.load

    def load(indices):
        requested.append(len(indices))
        return original(indices)

    prep.dataset.load = load  # type: ignore[method-assign]
    audit = ClassificationAudit(prep)
    audit.cache = RecordingCache(prep.dataset, max_bytes=1)
    results = audit.run()
    assert results["status"] == "complete"
    return requested, audit.cache, len(prep.dataset)


@pytest.mark.parametrize("n_per_class", [12, 48])
def test_audit_streams_in_batches(n_per_class: int, tiny_model, tmp_path: Path) -> None:
    requested, cache, n = audit_with_tiny_cache(tmp_path, tiny_model, n_per_class)
    item_bytes = 3 * 32 * 32 * 4 + 8  # float32 image + int64 label
    assert n == 2 * n_per_class
    assert sum(requested) >= n, "every image is decoded at least once"
    assert max(requested) <= BATCH, f"a load asked for {max(requested)} images at once (batch size {BATCH})"
    assert cache.peak_items <= BATCH
    assert cache.peak_bytes <= BATCH * item_bytes


def test_cache_evicts_to_its_cap() -> None:
    """Without the cap the cache would keep all 40 images; with it, one batch at most."""

    class Synthetic:
        def __len__(self) -> int:
            return 40

        def load(self, indices):
            from auditor.interfaces import Batch
            import numpy as np

            return Batch(torch.zeros(len(indices), 3, 8, 8), torch.zeros(len(indices), dtype=torch.long),
                         [str(i) for i in indices], np.asarray(indices))

    item = 3 * 8 * 8 * 4 + 8
    cache = RecordingCache(Synthetic(), max_bytes=3 * item)  # type: ignore[arg-type]
    for start in range(0, 40, 5):
        cache.load(list(range(start, start + 5)))
    assert cache.peak_items <= 5
    assert cache.bytes <= 5 * item

"""Decoded samples kept in memory between the steps of an audit, bounded in bytes."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch

from auditor.interfaces import Batch, Dataset

CACHE_BYTES = 256 * 2**20


class SampleCache:
    """Decoded samples, bounded in bytes so memory does not grow with the data set."""

    def __init__(self, dataset: Dataset, max_bytes: int = CACHE_BYTES) -> None:
        self.dataset = dataset
        self.max_bytes = max_bytes
        self.items: OrderedDict[int, tuple[torch.Tensor, torch.Tensor, str, Any]] = OrderedDict()
        self.bytes = 0

    def load(self, indices: Sequence[int]) -> Batch:
        missing = [int(i) for i in indices if int(i) not in self.items]
        if missing:
            batch = self.dataset.load(missing)
            for j, i in enumerate(missing):
                roi = batch.roi[j].clone() if batch.roi is not None else None
                # clone: a view would keep the whole decoded batch alive after eviction
                item = (batch.images[j].clone(), batch.targets[j].clone(), batch.ids[j], roi)
                self.items[i] = item
                self.bytes += _item_bytes(item)
        # Requested samples become the most recent before evicting, so the eviction below
        # (oldest first) can never drop one of them.
        for i in indices:
            self.items.move_to_end(int(i))
        while self.bytes > self.max_bytes and len(self.items) > len(indices):
            _, old = self.items.popitem(last=False)
            self.bytes -= _item_bytes(old)
        items = [self.items[int(i)] for i in indices]
        rois = [it[3] for it in items]
        return Batch(
            images=torch.stack([it[0] for it in items]),
            targets=torch.stack([it[1] for it in items]),
            ids=[it[2] for it in items],
            indices=np.asarray(indices, dtype=np.int64),
            roi=torch.stack(rois) if rois and rois[0] is not None else None,
        )


def _item_bytes(item: tuple[torch.Tensor, torch.Tensor, str, Any]) -> int:
    return sum(t.numel() * t.element_size() for t in (item[0], item[1], item[3]) if t is not None)



"""Fixtures for the segmentation tests: a differentiable thresholding "model" whose masks
an attack can flip, tiny synthetic lesion data sets written to tmp_path, a registry with
only the plugins an audit needs, and the path to the real data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import pytest
import torch
from PIL import Image
from torch import nn

from auditor import hookspecs
from auditor.config import AuditConfig
from auditor.registry import Registered, Registry

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SIZE = 32
CONTRAST = 0.03  # lesion +-3% around 0.5: eps 8/255 (0.031) can flip it, eps 2/255 only its border


class ThresholdSeg(nn.Module):
    """logit = gain * (3x3 mean of the image - 0.5): lesions brighter than 0.5 are foreground.

    ``out_channels`` 1 gives sigmoid logits; K > 1 gives (N, K, H, W) logits whose argmax is
    class 1 where the binary logit is positive and class 0 elsewhere (class 2.. never win)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 1, gain: float = 40.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0 / (9 * in_channels))
            self.conv.bias.fill_(-0.5)
        self.gain = gain
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.gain * self.conv(x)
        if self.out_channels == 1:
            return z
        parts = [-z, z]
        for k in range(2, self.out_channels):
            parts.append(z - 5.0 * k)
        return torch.cat(parts, dim=1)


def lesion_images(n: int, size: int = SIZE, seed: int = 0, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, C) uint8 images and (N, H, W) uint8 0/255 masks: one disc per image,
    slightly brighter than a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        radius = rng.integers(size // 8, size // 4)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        base = 0.5 + CONTRAST * np.where(mask, 1.0, -1.0)
        pixels = base[..., None] + rng.normal(0, 0.01, (size, size, channels))
        images.append((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8))
        masks.append(mask.astype(np.uint8) * 255)
    return np.stack(images), np.stack(masks)


def write_seg_folders(root: Path, n: int = 4, size: int = SIZE, seed: int = 0, roi: np.ndarray | None = None,
                      mask_dir: str = "masks") -> Path:
    images, masks = lesion_images(n, size, seed)
    for sub in ("images", mask_dir) + (("fov",) if roi is not None else ()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(images[i]).save(root / "images" / f"img{i:02d}.png")
        Image.fromarray(masks[i]).save(root / mask_dir / f"img{i:02d}.png")
        if roi is not None:
            Image.fromarray(roi.astype(np.uint8) * 255).save(root / "fov" / f"img{i:02d}.png")
    return root


def save_scripted(model: nn.Module, path: Path) -> Path:
    torch.jit.script(model.eval()).save(str(path))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny models here are dominated by per-op overhead, which two OpenMP threads
    only add to (badly so on a loaded machine); the real-data tests opt back in."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def seg_data(tmp_path: Path) -> Path:
    return write_seg_folders(tmp_path / "data")


@pytest.fixture
def threshold_model(tmp_path: Path) -> Path:
    return save_scripted(ThresholdSeg(), tmp_path / "threshold_seg.pt")


def make_registry(*extra: Any) -> Registry:
    """The built-in plugins an audit needs (not the reporters), registered through pluggy as
    :func:`auditor.registry.load_registry` does, plus ``extra`` plugin objects."""
    import importlib

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    names = ("plugins.modalities", "plugins.models", "plugins.data", "plugins.attacks", "plugins.metrics")
    for name in names:
        pm.register(importlib.import_module(name), name=name)
    for i, plugin in enumerate(extra):
        pm.register(plugin, name=f"extra-{i}")
    registry = Registry(components={kind: {} for kind in hookspecs.REGISTRY_HOOKS})
    for kind, hook_name in hookspecs.REGISTRY_HOOKS.items():
        table = registry.components[kind]
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            def register(component: Any, _plugin: str = impl.plugin_name, _table: dict = table) -> None:
                assert component.name not in _table, component.name
                _table[component.name] = Registered(component.name, _plugin, component)

            impl.function(register=register)
    return registry


@pytest.fixture(scope="session")
def registry() -> Registry:
    return make_registry()


def seg_config(model: Path, data: Path, out: Path, **kwargs: Any) -> AuditConfig:
    defaults: dict[str, Any] = dict(
        task="segmentation", input_size=(SIZE, SIZE), eps_255=[2.0, 8.0], budget="quick", device="cpu",
        attacks=["seg-fgsm-bce", "seg-pgd-bce", "seg-pgd-dice", "seg-lesion-removal"], formats=[],
        batch_size=8,
    )
    defaults.update(kwargs)
    return AuditConfig(model=model, data=data, out=out, **defaults)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (clone ../shared/data beside the checkout)")
    return SHARED_DATA

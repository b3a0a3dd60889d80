"""The offline demo: synthetic dermoscopy-like images and a small model trained in seconds.

The images are generated, not clinical: round, evenly pigmented "benign" lesions and
irregular, darker, variegated "melanoma" lesions on skin-toned noise. The report marks
the data as synthetic. Everything is seeded, so the demo gives the same numbers on every
machine with the same torch build.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from auditor.architectures import SmallCNN
from auditor.training import accuracy, flip_augment, train_classifier

CLASSES = ("benign", "melanoma")
SIZE = 32


def synth_lesion(rng: np.random.Generator, malignant: bool, size: int = SIZE) -> np.ndarray:
    """One (size, size, 3) uint8 image. The classes overlap on purpose (border
    irregularity, darkness and variegation are drawn from overlapping ranges), so the
    model's margins are as thin as a real classifier's and the audit has something to find."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    skin = np.array([0.86, 0.68, 0.58]) + rng.normal(0, 0.05, 3)
    img = np.ones((size, size, 3)) * skin + rng.normal(0, 0.04, (size, size, 3))
    cy, cx = size / 2 + rng.normal(0, 2, 2)
    angle = np.arctan2(yy - cy, xx - cx)
    radius = np.hypot(yy - cy, xx - cx)
    base = rng.uniform(0.2, 0.32) * size
    irregularity = rng.uniform(0.08, 0.22) if malignant else rng.uniform(0.0, 0.12)
    lobes = rng.integers(3, 7)
    wobble = 1 + irregularity * np.sin(lobes * angle + rng.uniform(0, 2 * np.pi))
    tone = np.array([0.5, 0.35, 0.28]) - (0.06 if malignant else 0.0) + rng.normal(0, 0.07, 3)
    variegation = (rng.uniform(0.03, 0.1) if malignant else rng.uniform(0.0, 0.05)) * (
        np.sin(xx / rng.uniform(2, 4)) * np.cos(yy / rng.uniform(2, 4))
    )
    edge = np.clip((base * wobble - radius) / 1.5, 0, 1)[..., None]
    img = img * (1 - edge) + (tone + variegation[..., None]) * edge
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_split(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(2):
        for _ in range(n_per_class):
            images.append(synth_lesion(rng, malignant=bool(label)))
            labels.append(label)
    return np.stack(images), np.asarray(labels)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def build_demo(workdir: Path, seed: int = 0, n_test_per_class: int = 60) -> tuple[Path, Path, dict]:
    """Write the test images as class folders and a TorchScript model; returns their paths
    and the training facts."""
    workdir.mkdir(parents=True, exist_ok=True)
    train_x, train_y = make_split(200, seed)
    test_x, test_y = make_split(n_test_per_class, seed + 1)
    data_dir = workdir / "demo-data"
    for label, name in enumerate(CLASSES):
        (data_dir / name).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(test_x, test_y)):
        Image.fromarray(img).save(data_dir / CLASSES[label] / f"lesion_{i:03d}.png")
    torch.manual_seed(seed)
    model = SmallCNN(3, 2, width=16)
    train_classifier(model, to_tensor(train_x), torch.from_numpy(train_y), epochs=10, batch_size=32,
                     lr=2e-3, seed=seed, augment=flip_augment)
    facts = {
        "train_images": int(len(train_x)),
        "train_accuracy": accuracy(model, to_tensor(train_x), torch.from_numpy(train_y)),
        "architecture": "SmallCNN (auditor.architectures), 3x32x32 -> 2 logits",
        "epochs": 10,
    }
    model_path = workdir / "demo-model.pt"
    torch.jit.script(model.eval()).save(str(model_path))
    return model_path, data_dir, facts

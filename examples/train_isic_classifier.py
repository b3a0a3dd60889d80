"""Train a small melanoma classifier on ISIC 2017 (../shared/data/isic2017) to audit.

medaudit audits models it is given; this example makes one, offline, in a couple of
minutes on 2 CPU cores, so the real-data tests and the README's walkthrough have a real
model. The TorchScript file lands outside the repository (default
``~/.cache/medaudit/isic_<arch>_w<width>_<size>px_e<epochs>_s<seed>.pt``) and is reused when it exists.

    python examples/train_isic_classifier.py --arch small_cnn --epochs 12
    medaudit run ~/.cache/medaudit/isic_small_cnn_w32_64px_e12_s0.pt --data ../shared/data/isic2017/labels.csv \\
        --split val --modality dermoscopy --classes benign,melanoma

Settings: Adam (lr 1e-3, weight decay 1e-4), batch 32, random flips, class-weighted
cross-entropy (melanoma is ~19% of the training split), images resized to 64x64.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from auditor.architectures import ResNet18, SmallCNN
from auditor.datasets import open_dataset
from auditor.interfaces import DataOptions
from auditor.registry import get_registry
from auditor.training import accuracy, flip_augment, train_classifier

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CACHE = Path.home() / ".cache" / "medaudit"


def load_split(csv: Path, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = open_dataset(get_registry(), csv, DataOptions(channels=3, input_size=(size, size), split=split))
    batch = dataset.load(list(range(len(dataset))))
    return batch.images, batch.targets


def train(arch: str = "small_cnn", epochs: int = 12, size: int = 64, seed: int = 0,
          data: Path = SHARED / "isic2017" / "labels.csv", out: Path | None = None, force: bool = False,
          width: int = 32) -> Path:
    out = out or CACHE / f"isic_{arch}_w{width}_{size}px_e{epochs}_s{seed}.pt"
    if out.exists() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    x, y = load_split(data, "train", size)
    counts = torch.bincount(y, minlength=2).float()
    weights = counts.sum() / (2 * counts)
    model = SmallCNN(3, 2, width=width) if arch == "small_cnn" else ResNet18(3, 2, width=width)
    t0 = time.perf_counter()
    train_classifier(model, x, y, epochs=epochs, batch_size=32, lr=1e-3, seed=seed, augment=flip_augment,
                     class_weights=weights)
    vx, vy = load_split(data, "val", size)
    print(f"trained {arch} in {time.perf_counter() - t0:.0f} s: train accuracy {accuracy(model, x, y):.3f}, "
          f"val accuracy {accuracy(model, vx, vy):.3f} ({int(vy.sum())} melanoma of {len(vy)})")
    torch.jit.script(model.eval()).save(str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=("small_cnn", "resnet18"), default="small_cnn")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=32, help="channels of the first layer")
    parser.add_argument("--data", type=Path, default=SHARED / "isic2017" / "labels.csv")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--force", action="store_true", help="retrain even when the cached file exists")
    args = parser.parse_args()
    path = train(args.arch, args.epochs, args.size, args.seed, args.data, args.out, args.force, args.width)
    print(path)


if __name__ == "__main__":
    main()

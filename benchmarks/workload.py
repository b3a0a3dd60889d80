"""The benchmark's reference workload: ISIC 2017 at 64x64 and a briefly trained ResNet-18.

Everything is read through medaudit's own CSV data source from ``../shared/data/isic2017``.
The weights are cached outside the repository (``~/.cache/medaudit/isic_resnet18.pt``,
with a JSON file of training facts beside it), so the first run trains for a few minutes
on 2 CPU cores and later runs reuse them.

Audit pool: the 150 ``val`` images plus 50 seeded (stratified) ``train`` images that are
held out of training. The images are written as 64x64 PNGs with a CSV manifest into a
temporary folder, so the medaudit peers read them exactly like a user's ``medaudit run``,
and the ART / torchattacks peers read the very same files into tensors.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from auditor.architectures import ResNet18
from auditor.interfaces import DataOptions
from auditor.training import accuracy, flip_augment, train_classifier
from plugins.data.common import stratified_subset
from plugins.data.csv_manifest import CsvSource

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "isic2017"
CACHE = Path(os.environ.get("MEDAUDIT_BENCH_CACHE", Path.home() / ".cache" / "medaudit"))
WEIGHTS = CACHE / "isic_resnet18.pt"
FACTS = CACHE / "isic_resnet18.json"
# The reference model is the standard width (64). A narrower one (MEDAUDIT_BENCH_WIDTH=8,
# with its own MEDAUDIT_BENCH_CACHE) makes a smoke run of the benchmark's code paths cheap.
WIDTH = int(os.environ.get("MEDAUDIT_BENCH_WIDTH", "64"))
SIZE = (64, 64)
HELD_OUT = 50
CLASSES = ("benign", "melanoma")
ARCH = "auditor.architectures:resnet18" if WIDTH == 64 else "benchmarks.workload:resnet18_bench"


def resnet18_bench() -> ResNet18:
    """The benchmark's architecture (for ``--arch``): ResNet-18 at 64x64, two classes."""
    return ResNet18(3, 2, width=WIDTH)


def load_split(data: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    options = DataOptions(channels=3, input_size=SIZE, split=split, seed=0)
    dataset = CsvSource().open(data / "labels.csv", options)
    batch = dataset.load(range(len(dataset)))
    return batch.images, batch.targets


def balanced_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 128]).argmax(1) for i in range(0, len(x), 128)])
    recalls = [float((pred[y == c] == c).float().mean()) for c in y.unique()]
    return float(np.mean(recalls))


def train_or_load(data: Path, epochs: int = 1, seed: int = 0, log=print) -> tuple[torch.nn.Module, dict]:
    """The cached model and its facts, training it first when the cache is empty or stale."""
    model = resnet18_bench()
    if WEIGHTS.is_file() and FACTS.is_file():
        facts = json.loads(FACTS.read_text())
        if facts.get("epochs") == epochs and facts.get("seed") == seed and facts.get("width", 64) == WIDTH:
            model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
            return model.eval(), facts
    train_x, train_y = load_split(data, "train")
    val_x, val_y = load_split(data, "val")
    held = stratified_subset(train_y.numpy(), HELD_OUT, seed)
    keep = np.setdiff1d(np.arange(len(train_y)), held)
    counts = torch.bincount(train_y[keep], minlength=2).float()
    # Inverse-frequency class weights: otherwise a briefly trained model predicts "benign"
    # for everything (81% accuracy, nothing for an attack to break on melanoma).
    weights = counts.sum() / (2 * counts)
    log(f"training ResNet-18 on {len(keep)} ISIC train images for {epochs} epochs (class weights {weights.tolist()})")
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    log(f"training starts ({torch.get_num_threads()} threads)")
    train_classifier(model, train_x[keep], train_y[keep], epochs=epochs, batch_size=32, lr=1e-3, seed=seed,
                     augment=flip_augment, class_weights=weights)
    facts = {
        "epochs": epochs, "seed": seed, "width": WIDTH, "train_images": int(len(keep)), "held_out_train": held.tolist(),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "val_accuracy": accuracy(model, val_x, val_y), "val_balanced_accuracy": balanced_accuracy(model, val_x, val_y),
        "class_weights": weights.tolist(),
        "architecture": f"ResNet18 (auditor.architectures, width {WIDTH}), 3x64x64 -> 2 logits",
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), WEIGHTS)
    FACTS.write_text(json.dumps(facts, indent=1))
    return model.eval(), facts


def model_for(args, log=print) -> tuple[torch.nn.Module, dict] | None:
    """What every benchmark starts with: ``--threads`` applied, the data found (None, with a
    message, when it is not) and the cached model loaded or trained."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.data / "labels.csv").is_file():
        print(f"no ISIC data at {args.data}: give --data PATH/isic2017", file=sys.stderr)
        return None
    return train_or_load(args.data, args.epochs, args.seed, log=log)


def write_audit_set(data: Path, facts: dict, n: int, seed: int, folder: Path) -> Path:
    """``n`` seeded, stratified images of the audit pool as PNGs plus ``labels.csv``."""
    train_x, train_y = load_split(data, "train")
    val_x, val_y = load_split(data, "val")
    held = np.asarray(facts["held_out_train"], dtype=np.int64)
    pool_x = torch.cat([val_x, train_x[held]])
    pool_y = torch.cat([val_y, train_y[held]])
    pick = stratified_subset(pool_y.numpy(), n, seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = ["image,label"]
    for k, i in enumerate(pick):
        pixels = (pool_x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        name = f"images/isic_{k:03d}.png"
        Image.fromarray(pixels).save(folder / name)
        rows.append(f"{name},{CLASSES[int(pool_y[i])]}")
    manifest = folder / "labels.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def save_weights_copy(model: torch.nn.Module, folder: Path) -> Path:
    path = folder / "isic_resnet18.pt"
    torch.save(model.state_dict(), path)
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Train (or load) the benchmark's cached ResNet-18.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _, info = train_or_load(args.data, args.epochs, args.seed)
    print(json.dumps({k: v for k, v in info.items() if k != "held_out_train"}, indent=1))

"""Train a small U-Net on PH2 lesion masks, then audit it with medaudit.

PH2 (Mendonca et al. 2013, research use) has 200 dermoscopy images with binary lesion
masks and no official split. This script

1. writes a seeded 80/20 split manifest (stratified by diagnosis) into the cache folder,
   next to links to the shared images and masks, so medaudit's own CSV reader loads the
   data for training and for the audit alike (same resizing, same mask binarisation);
2. trains ``auditor.architectures.UNet`` (3 levels, width 16; BCE + soft Dice, Adam, flips)
   on the 160 training images at 96x128 for 30 epochs (about 8 TFLOP: minutes on 2 idle
   CPU cores, much longer on a loaded machine; test Dice 0.91 with the default seed);
3. caches the weights and a TorchScript file OUTSIDE the repository
   (``~/.cache/medaudit/ph2_unet.pt`` and ``ph2_unet.torchscript.pt``; ``--retrain`` redoes it);
4. audits the TorchScript file on the 40 test images (``medaudit run`` in-process, the
   default segmentation battery: FGSM and PGD with BCE and Dice losses, lesion removal).

Example::

    python examples/train_ph2_unet.py                       # train once, then audit
    python examples/train_ph2_unet.py --budget quick --eps 2,8 --out ph2-audit
    medaudit run ~/.cache/medaudit/ph2_unet.torchscript.pt \\
        --data ~/.cache/medaudit/ph2_seg/ph2_split.csv --split test --task segmentation \\
        --modality dermoscopy --input-size 96x128 --channels 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from auditor.architectures import UNet  # noqa: E402
from auditor.config import AuditConfig, parse_eps, parse_size  # noqa: E402
from auditor.interfaces import DataOptions  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "ph2"
DEFAULT_CACHE = Path(os.environ.get("MEDAUDIT_CACHE", Path.home() / ".cache" / "medaudit"))


def write_split(data: Path, cache: Path, seed: int, test_fraction: float = 0.2) -> Path:
    """A manifest image,mask,label,split under ``cache/ph2_seg`` with links to ``data``'s folders
    (manifest paths must stay below the CSV's folder)."""
    folder = cache / "ph2_seg"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("images", "masks"):
        link = folder / name
        if link.is_symlink() and link.resolve() != (data / name).resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to((data / name).resolve(), target_is_directory=True)
    with (data / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(seed)
    test = set()
    for label in sorted({r["label"] for r in rows}):
        members = [r["image"] for r in rows if r["label"] == label]
        k = int(round(len(members) * test_fraction))
        test.update(rng.choice(members, size=k, replace=False).tolist())
    manifest = folder / "ph2_split.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "mask", "label", "split"])
        for r in rows:
            writer.writerow([r["image"], r["mask"], r["label"], "test" if r["image"] in test else "train"])
    return manifest


def load_split(manifest: Path, split: str, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    from auditor.datasets import open_dataset
    from auditor.registry import get_registry

    options = DataOptions(channels=3, input_size=size, split=split, task="segmentation")
    dataset = open_dataset(get_registry(), manifest, options, source="csv")
    batch = dataset.load(range(len(dataset)))
    return batch.images, batch.targets


def soft_dice_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * masks).flatten(1).sum(1)
    return (1 - (2 * inter + 1) / (p.flatten(1).sum(1) + masks.flatten(1).sum(1) + 1)).mean()


def train(images: torch.Tensor, masks: torch.Tensor, epochs: int, seed: int, batch_size: int = 16,
          lr: float = 2e-3) -> UNet:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = UNet(in_channels=3, out_channels=1, width=16)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    steps = epochs * ((len(images) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    target = masks[:, None].float()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        total = 0.0
        for start in range(0, len(images), batch_size):
            idx = order[start : start + batch_size]
            x, y = images[idx], target[idx]
            if torch.rand(1, generator=gen).item() < 0.5:
                x, y = x.flip(3), y.flip(3)
            if torch.rand(1, generator=gen).item() < 0.5:
                x, y = x.flip(2), y.flip(2)
            opt.zero_grad()
            logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits, y) + soft_dice_loss(logits, y)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(images):.4f}", file=sys.stderr)
    return model.eval()


@torch.no_grad()
def mean_dice(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor) -> float:
    from plugins.metrics import compute_dice

    pred = (model(images)[:, 0] >= 0).long()
    return float(compute_dice(pred, masks).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="PH2 folder with labels.csv, images/, masks/")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where weights and the split live")
    parser.add_argument("--size", default="96x128", help="input size HxW (multiples of 4)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true", help="train even when cached weights exist")
    parser.add_argument("--no-audit", action="store_true", help="only train (and cache) the model")
    parser.add_argument("--eps", default="2,4,6,8", help="audit budgets in /255 units")
    parser.add_argument("--attacks", default=None, help="comma-separated attacks (default: the segmentation battery)")
    parser.add_argument("--budget", default="standard", choices=("quick", "standard", "thorough"))
    parser.add_argument("--out", type=Path, default=Path("ph2-unet-audit"))
    parser.add_argument("--report-format", default="html", help="reporters to run after the audit, or none")
    args = parser.parse_args(argv)

    if not (args.data / "labels.csv").is_file():
        print(f"PH2 not found at {args.data} (expected labels.csv, images/, masks/)", file=sys.stderr)
        return 3
    size = parse_size(args.size)
    assert size is not None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    manifest = write_split(args.data, args.cache, args.seed)
    weights = args.cache / "ph2_unet.pt"
    scripted = args.cache / "ph2_unet.torchscript.pt"
    facts_path = args.cache / "ph2_unet.json"
    facts_key = {"size": list(size), "epochs": args.epochs, "seed": args.seed}
    cached = weights.is_file() and scripted.is_file() and facts_path.is_file()
    if cached and not args.retrain and json.loads(facts_path.read_text()).get("key") != facts_key:
        cached = False
    if cached and not args.retrain:
        facts = json.loads(facts_path.read_text())
        print(f"using cached model {scripted} (test Dice {facts['test_dice']:.4f}; --retrain to redo)", file=sys.stderr)
    else:
        t0 = time.perf_counter()
        train_x, train_y = load_split(manifest, "train", size)
        test_x, test_y = load_split(manifest, "test", size)
        model = train(train_x, train_y, args.epochs, args.seed)
        elapsed = time.perf_counter() - t0
        facts = {
            "key": facts_key, "architecture": "auditor.architectures.UNet(in_channels=3, out_channels=1, width=16)",
            "n_train": len(train_x), "n_test": len(test_x), "train_s": round(elapsed, 1),
            "train_dice": mean_dice(model, train_x, train_y), "test_dice": mean_dice(model, test_x, test_y),
            "loss": "BCE + soft Dice", "optimiser": "Adam, one-cycle lr 2e-3, batch 16, flips",
            "threads": torch.get_num_threads(),
        }
        torch.save(model.state_dict(), weights)
        torch.jit.script(model).save(str(scripted))
        facts_path.write_text(json.dumps(facts, indent=1))
        print(f"trained in {elapsed:.0f} s: train Dice {facts['train_dice']:.4f}, test Dice {facts['test_dice']:.4f}; "
              f"saved {scripted}", file=sys.stderr)
    if args.no_audit:
        return 0

    from auditor.audit import run_audit
    from auditor.cli.common import RichProgress
    from auditor.registry import get_registry
    from auditor.reporting import render_reports

    registry = get_registry()
    formats = [f for f in args.report_format.split(",") if f and f != "none"]
    missing = [f for f in formats if f not in registry.names("reporters")]
    if missing:
        print(f"no reporter for {', '.join(missing)} installed; writing results.json only", file=sys.stderr)
        formats = [f for f in formats if f not in missing]
    config = AuditConfig(
        model=scripted, data=manifest, out=args.out, split="test", task="segmentation", modality="dermoscopy",
        input_size=size, channels=3, eps_255=parse_eps(args.eps),
        attacks=args.attacks.split(",") if args.attacks else None, budget=args.budget, seed=args.seed,
        device="cpu", formats=formats, extra={"training": {k: v for k, v in facts.items() if k != "key"}},
    )
    results = run_audit(config, registry, progress=RichProgress(), command=" ".join(sys.argv))
    render_reports(results, args.out, formats, registry)
    summary = results["summary"]
    print(json.dumps({"out": str(args.out), "clean_dice": summary["clean_dice"],
                      "worst_case_dice": summary["worst_case"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure PGD adversarial training on PH2 (../shared/data/ph2): a 3-class ResNet-18 and a
lesion-segmentation U-Net, standard vs hardened.

PH2 (Mendonca et al. 2013, research use) has 200 dermoscopy images, 3 diagnoses (common
nevus, atypical nevus, melanoma) and lesion masks, and no official split. This script:

1. writes a seeded, diagnosis-stratified 80/20 split manifest (the algorithm of
   ``examples/train_ph2_unet.py``, so the same seed gives the same split) under
   ``~/.cache/medaudit/ph2_defend/``;
2. trains a standard ResNet-18 (``auditor.architectures.ResNet18``, width 8, 64x64; Adam
   lr 1e-3, class-weighted CE, flips, 40 epochs on the 160 training images), then
   ``medaudit harden``s it: PGD-AT at 4/255 (3 steps, random start, 15 epochs of
   fine-tuning, Adam lr 5e-4; 10% of the training images held out for the log);
3. audits both on the 40 test images (FGSM, PGD, CW, AutoAttack, Square; quick budget;
   2, 4, 8 /255);
4. trains a small ``auditor.architectures.UNet`` (width 8, 64x64, BCE + soft Dice, Adam
   lr 2e-3, flips, 30 epochs) on the same split, or takes ``--unet PATH --unet-size HxW``
   (e.g. the U-Net of ``examples/train_ph2_unet.py``, ``~/.cache/medaudit/ph2_unet.torchscript.pt``
   at 96x128, which costs about 10 times more per step on a CPU); hardens it with PGD-AT at
   4/255 (Dice inner loss, 3 steps, 6 epochs) and audits both under PGD with the Dice
   loss (``seg-pgd-dice``, quick budget, 2, 4, 8 /255).

    python examples/defend_ph2.py --out defend-ph2
    python examples/defend_ph2.py --skip segmentation

Writes ``summary.json`` and ``summary.md`` to ``--out``. Cite PH2 (Mendonca et al. 2013).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))

from defend_isic import CACHE, SHARED, audit, harden_model, markdown, worst_row  # noqa: E402

CLASSES = ["common_nevus", "atypical_nevus", "melanoma"]


def write_split(data: Path, folder: Path, seed: int, test_fraction: float = 0.2) -> Path:
    """``image,mask,label,split`` with links to ``data``'s images and masks (paths in a
    manifest must stay below its folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("images", "masks"):
        link = folder / name
        if not link.exists():
            link.symlink_to((data / name).resolve(), target_is_directory=True)
    with (data / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(seed)
    test = set()
    for label in sorted({r["label"] for r in rows}):
        members = [r["image"] for r in rows if r["label"] == label]
        test.update(rng.choice(members, size=int(round(len(members) * test_fraction)), replace=False).tolist())
    manifest = folder / "ph2_split.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "mask", "label", "split"])
        for r in rows:
            writer.writerow([r["image"], r["mask"], r["label"], "test" if r["image"] in test else "train"])
    return manifest


def load(manifest: Path, split: str, size: tuple[int, int], task: str) -> tuple[torch.Tensor, torch.Tensor]:
    from auditor.datasets import open_dataset
    from auditor.interfaces import DataOptions
    from auditor.registry import get_registry

    options = DataOptions(channels=3, input_size=size, split=split, task=task,
                          classes=CLASSES if task == "classification" else None)
    dataset = open_dataset(get_registry(), manifest, options, source="csv")
    batch = dataset.load(list(range(len(dataset))))
    return batch.images, batch.targets


def train_standard_classifier(manifest: Path, out: Path, width: int, epochs: int, seed: int) -> Path:
    from auditor.architectures import ResNet18
    from auditor.training import accuracy, flip_augment, train_classifier

    if out.is_file():
        return out
    x, y = load(manifest, "train", (64, 64), "classification")
    counts = torch.bincount(y, minlength=3).float()
    torch.manual_seed(seed)
    model = ResNet18(3, 3, width=width)
    t0 = time.perf_counter()
    train_classifier(model, x, y, epochs=epochs, batch_size=32, lr=1e-3, seed=seed, augment=flip_augment,
                     class_weights=counts.sum() / (3 * counts))
    print(f"standard PH2 classifier: {time.perf_counter() - t0:.0f} s, train accuracy {accuracy(model, x, y):.3f}",
          file=sys.stderr)
    torch.jit.script(model.eval()).save(str(out))
    return out


def train_small_unet(manifest: Path, out: Path, size: tuple[int, int], width: int, epochs: int, seed: int) -> Path:
    from auditor.architectures import UNet

    if out.is_file():
        return out
    x, y = load(manifest, "train", size, "segmentation")
    target = (y > 0).float()[:, None]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = UNet(3, 1, width=width)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-5)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 16):
            idx = order[start : start + 16]
            xb, yb = x[idx], target[idx]
            if torch.rand(1, generator=gen).item() < 0.5:
                xb, yb = xb.flip(3), yb.flip(3)
            opt.zero_grad()
            logits = model(xb)
            p = torch.sigmoid(logits)
            dice = 1 - (2 * (p * yb).flatten(1).sum(1) + 1) / (p.flatten(1).sum(1) + yb.flatten(1).sum(1) + 1)
            (F.binary_cross_entropy_with_logits(logits, yb) + dice.mean()).backward()
            opt.step()
    torch.jit.script(model.eval()).save(str(out))
    return out


def seg_row(results: dict[str, Any]) -> dict[str, Any]:
    summary = results["summary"]
    return {"clean": summary["clean_dice"], "worst_case": summary["worst_case"], "time_s": results.get("example_wall_s")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "ph2")
    parser.add_argument("--out", type=Path, default=Path("defend-ph2"))
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--std-epochs", type=int, default=40)
    parser.add_argument("--at-epochs", type=int, default=15)
    parser.add_argument("--at-steps", type=int, default=3)
    parser.add_argument("--at-lr", type=float, default=5e-4)
    parser.add_argument("--unet", type=Path, default=None, help="U-Net TorchScript to harden (default: see above)")
    parser.add_argument("--unet-size", default=None, help="input size HxW of --unet, or of the small U-Net (64)")
    parser.add_argument("--seg-at-epochs", type=int, default=6)
    parser.add_argument("--eval-steps", type=int, default=10, help="PGD steps of the held-out log's evaluation")
    parser.add_argument("--eps", default="2,4,8")
    parser.add_argument("--attacks", default="fgsm,pgd,cw,autoattack,square")
    parser.add_argument("--budget", default="quick", choices=("quick", "standard", "thorough"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: classification, segmentation")
    args = parser.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        print(f"PH2 not found at {args.data}", file=sys.stderr)
        return 3
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    eps = [float(e) for e in args.eps.split(",")]
    folder = CACHE / "ph2_defend"
    manifest = write_split(args.data, folder, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary.update({"title": "PGD adversarial training measured on PH2 (seeded 80/20 split, 40 test images)",
                    "manifest": str(manifest)})
    summary["settings_text"] = (
        f"Classifier: ResNet-18 width {args.width}, 64x64, 3 classes, {args.std_epochs} epochs standard training; "
        f"PGD-AT eps 4/255, {args.at_steps} steps of 2.5*eps/{args.at_steps}, random start, {args.at_epochs} epochs "
        f"fine-tuning, Adam lr {args.at_lr:g}, class-weighted CE. Audits on the 40 test images: {args.attacks}, "
        f"budget {args.budget}, cascade, eps {args.eps} /255, seed {args.seed}. CPU, 1 thread.")
    t0 = time.perf_counter()

    if "classification" not in skip:
        standard = train_standard_classifier(
            manifest, CACHE / f"ph2_resnet18_w{args.width}_64px_e{args.std_epochs}_s{args.seed}.pt", args.width,
            args.std_epochs, args.seed)
        at_path = CACHE / f"ph2_resnet18_w{args.width}_64px_pgdat4_e{args.at_epochs}_k{args.at_steps}_s{args.seed}.pt"
        log = harden_model(standard, manifest, at_path, method="pgd-at", eps_255=4.0, epochs=args.at_epochs,
                           steps=args.at_steps, lr=args.at_lr, split="train", input_size=(64, 64), channels=3,
                           classes=CLASSES, seed=args.seed, data_format="csv", device="cpu")
        attacks = args.attacks.split(",")
        before = audit(standard, manifest, args.out / "audit-standard", split="test", classes=CLASSES, eps=eps,
                       attacks=attacks, budget=args.budget, seed=args.seed)
        after = audit(at_path, manifest, args.out / "audit-pgd-at", split="test", classes=CLASSES, eps=eps,
                      attacks=attacks, budget=args.budget, seed=args.seed)
        from auditor.hardening import evidence_from_audits

        summary["hardening"] = {
            "standard": worst_row(before), "hardened": worst_row(after),
            "evidence": evidence_from_audits(before, after, log, eps_255=4.0),
            "training": {"train_s": log["train_s"], "log_message": log["evidence"]["message"],
                         "epochs": [{k: e[k] for k in ("epoch", "loss", "clean_accuracy", "pgd_accuracy", "train_s")}
                                    for e in log["epochs"]]},
        }
        summary_path.write_text(json.dumps(summary, indent=1))

    if "segmentation" not in skip:
        from auditor.config import parse_size

        if args.unet is not None:
            unet, size, source = args.unet, parse_size(args.unet_size or "64"), f"given: {args.unet}"
        else:
            size = parse_size(args.unet_size or "64")
            unet = train_small_unet(manifest, CACHE / f"ph2_unet_small_w8_{size[0]}x{size[1]}_s{args.seed}.pt", size,
                                    8, 30, args.seed)
            source = "trained here: UNet width 8, BCE + soft Dice, 30 epochs"
        tag = f"{size[0]}x{size[1]}"
        unet_at = CACHE / f"{Path(unet).name.split('.')[0]}_pgdat4_dice_e{args.seg_at_epochs}_k{args.at_steps}.pt"
        seg_log = harden_model(Path(unet), manifest, unet_at, method="pgd-at", task="segmentation", inner_loss="dice",
                               eps_255=4.0, epochs=args.seg_at_epochs, steps=args.at_steps, lr=5e-4, split="train",
                               input_size=size, channels=3, seed=args.seed, data_format="csv", device="cpu",
                               batch_size=16, eval_steps=args.eval_steps)
        kwargs = dict(split="test", classes=None, eps=eps, attacks=["seg-pgd-dice"], budget=args.budget,
                      seed=args.seed, task="segmentation", input_size=size)
        before = audit(Path(unet), manifest, args.out / f"seg-standard-{tag}", **kwargs)
        after = audit(unet_at, manifest, args.out / f"seg-pgd-at-{tag}", **kwargs)
        summary["segmentation"] = {
            "standard": seg_row(before), "hardened": seg_row(after), "source": source,
            "training": {"train_s": seg_log["train_s"], "log_message": seg_log["evidence"]["message"]},
            "settings_text": (f"U-Net: {source}, input {tag}; PGD-AT eps 4/255 with the Dice inner loss, "
                              f"{args.at_steps} steps, {args.seg_at_epochs} epochs of fine-tuning, Adam lr 5e-4, "
                              f"BCE + soft Dice outer loss. Audit: seg-pgd-dice, budget {args.budget}, 40 test images. "
                              f"Training log: {seg_log['evidence']['message']}."),
        }
        summary_path.write_text(json.dumps(summary, indent=1))

    summary["wall_s"] = time.perf_counter() - t0
    summary_path.write_text(json.dumps(summary, indent=1))
    (args.out / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure the survey's structural defences and the three detectors on PneumoniaMNIST
(../shared/data/medmnist/pneumoniamnist.npz, 28x28 grey chest X-rays).

1. a standard SmallCNN (``auditor.architectures.SmallCNN``, 1 channel, width 16) trained
   for ``--epochs`` on ``--train-limit`` seeded training images (class-weighted CE, Adam
   1e-3; unweighted, a small sample trains a model that calls everything pneumonia);
2. ``medaudit harden --method block-switching`` (autoencoder front, ``--copies`` lower
   blocks) and ``--method feature-denoising`` (2 non-local blocks + PGD-AT at 4/255),
   both on the same training images;
3. ``medaudit run`` on ``--limit`` seeded test images (FGSM + PGD, quick budget, 2 and 4
   /255): the standard model (undefended), block switching without EoT (non-adaptive: one
   random copy per gradient) and with ``--defense model-eot`` (adaptive: EoT over 8 calls),
   feature denoising (deterministic: its own audit is adaptive; the non-adaptive number
   is the standard model's adversarial images transferred to it);
4. ``--detector-fit`` on the standard model: Mahalanobis, KD+BU and LID, fitted on the
   training images, AUROC per attack and under each detector's adaptive attacker.

    python examples/defend_pneumonia_structural.py --out defend-pneumonia

Writes ``summary.json`` and ``summary.md`` to ``--out``. Cite MedMNIST (Yang et al. 2023).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from auditor.config import AuditConfig  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "medmnist" / "pneumoniamnist.npz"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def audit(model: Path, out: Path, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    from auditor.audit import run_audit
    from auditor.cli.common import RichProgress
    from auditor.registry import get_registry

    config = AuditConfig(model=model, data=DATA, out=out, split="test", modality="chest-xray", input_size=(28, 28),
                         channels=1, eps_255=[2.0, 4.0], attacks=["fgsm", "pgd"], budget="quick", seed=0,
                         device="cpu", formats=["html", "pdf"], checks=False, limit=args.limit, **extra)
    t0 = time.perf_counter()
    results = run_audit(config, get_registry(), progress=RichProgress(), command=f"example: {out.name}")
    results["example_wall_s"] = time.perf_counter() - t0
    return results


def worst(results: dict[str, Any]) -> dict[str, Any]:
    return {"clean": results["clean"]["accuracy"],
            "worst_case": {f"{w['eps_255']:g}": w["robust_accuracy"] for w in results["worst_case"]},
            "wall_s": results.get("example_wall_s")}


def transfer(source: Path, target: Path, args: argparse.Namespace) -> dict[str, float]:
    """Non-adaptive numbers for a deterministic defence: FGSM and PGD (quick budget's PGD: 10
    steps of eps/4) computed on the standard model, evaluated on the defended one; worst
    case per image over the two, on ``--limit`` seeded test images."""
    import numpy as np

    from plugins.attacks.pgd import pgd_native

    arrays = np.load(DATA)
    idx = np.sort(np.random.default_rng(0).permutation(len(arrays["test_images"]))[: args.limit])
    x = torch.from_numpy(arrays["test_images"][idx]).float().div(255)[:, None]
    y = torch.from_numpy(arrays["test_labels"][idx].reshape(-1)).long()
    src, dst = torch.jit.load(str(source)).eval(), torch.jit.load(str(target)).eval()
    out = {}
    for eps_255 in (2.0, 4.0):
        eps = eps_255 / 255
        robust = torch.ones(len(y), dtype=torch.bool)
        for steps, step in ((1, eps), (10, eps / 4)):
            x_adv = pgd_native(src, x, y, eps, step, steps, 0, "ce", 0)
            with torch.no_grad():
                robust &= dst(x_adv).argmax(1) == y
        out[f"{eps_255:g}"] = float(robust.float().mean())
    with torch.no_grad():
        out["clean"] = float((dst(x).argmax(1) == y).float().mean())
    return out


def train_standard(out: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    import numpy as np

    from auditor.architectures import SmallCNN
    from auditor.training import train_classifier

    arrays = np.load(DATA)
    rng = np.random.default_rng(0)
    idx = np.sort(rng.permutation(len(arrays["train_images"]))[: args.train_limit])
    x = torch.from_numpy(arrays["train_images"][idx]).float().div(255)[:, None]
    y = torch.from_numpy(arrays["train_labels"][idx].reshape(-1)).long()
    torch.manual_seed(0)
    # class-weighted: without it a few epochs on a small sample call every image pneumonia (74% of train)
    weights = len(y) / (2 * torch.bincount(y, minlength=2).float().clamp(min=1))
    model = train_classifier(SmallCNN(1, 2, 16), x, y, epochs=args.epochs, batch_size=64, lr=1e-3, seed=0,
                             class_weights=weights).eval()
    pickled, scripted = out / "standard_module.pt", out / "standard.pt"
    torch.save(model, pickled)  # eager, for feature denoising (--trust-model: our own file)
    torch.jit.script(model).save(str(scripted))
    return pickled, scripted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("defend-pneumonia"))
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--train-limit", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--harden-epochs", type=int, default=2)
    args = parser.parse_args()
    from auditor.cli.common import RichProgress
    from auditor.hardening import HardenConfig, harden
    from auditor.registry import get_registry

    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"data": str(DATA), "settings": vars(args) | {"out": str(args.out)}}
    pickled, scripted = train_standard(args.out, args)
    save = lambda: (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))  # noqa: E731
    standard = audit(scripted, args.out / "audit_standard", args, detector_fit=DATA, detector_fit_split="train",
                     detector_samples=64)
    det = standard["detection"]
    summary["standard"] = worst(standard)
    summary["detectors"] = [{"name": d["detector"]["name"],
                             "plain": [{k: r[k] for k in ("attack", "eps_255", "auroc", "undetected_success_rate")}
                                       for r in d["attacks"]],
                             "adaptive": [{k: r[k] for k in ("eps_255", "auroc", "evasion_rate")} for r in d["adaptive"]]}
                            for d in [det] + det["other_detectors"]]
    save()
    common = dict(data=DATA, split="train", limit=args.train_limit, modality="chest-xray", input_size=(28, 28),
                  channels=1, eps_255=4.0, epochs=args.harden_epochs, steps=5, lr=1e-3, seed=0, device="cpu")
    t0 = time.perf_counter()
    bs_log = harden(HardenConfig(model=scripted, out=args.out / "block_switching.pt", method="block-switching",
                                 extra={"copies": args.copies, "ae_epochs": args.harden_epochs}, **common),
                    get_registry(), progress=RichProgress())
    summary["block_switching_train_s"] = time.perf_counter() - t0
    summary["block_switching_log"] = bs_log["evidence"]["message"]
    bs_plain = audit(args.out / "block_switching.pt", args.out / "audit_bs_plain", args)
    summary["block_switching_no_eot"] = worst(bs_plain)
    save()
    bs_eot = audit(args.out / "block_switching.pt", args.out / "audit_bs_eot", args, defense="model-eot:eot_samples=8")
    summary["block_switching_eot"] = worst(bs_eot)
    summary["block_switching_defense_block"] = {k: bs_eot["defense"][k] for k in (
        "gain", "non_adaptive", "undefended", "gain_disappears_under_adaptive")}
    save()
    t0 = time.perf_counter()
    fd_log = harden(HardenConfig(model=pickled, out=args.out / "feature_denoising.pt", method="feature-denoising",
                                 trust_model=True, extra={"denoise_blocks": 2}, **common), get_registry(),
                    progress=RichProgress())
    summary["feature_denoising_train_s"] = time.perf_counter() - t0
    summary["feature_denoising_log"] = fd_log["evidence"]["message"]
    summary["feature_denoising"] = worst(audit(args.out / "feature_denoising.pt", args.out / "audit_fd", args))
    summary["feature_denoising_transfer"] = transfer(scripted, args.out / "feature_denoising.pt", args)
    save()
    print(json.dumps(summary, indent=1, default=str))

if __name__ == "__main__":
    main()

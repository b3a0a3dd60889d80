"""Measure defenses on ISIC 2017 (../shared/data/isic2017): PGD adversarial training,
five preprocessing defenses (non-adaptive vs adaptive) and a Mahalanobis detector.

Reproduces the defenses issue's real checks on 2 CPU cores (settings are the defaults
below; everything is seeded and cached under ``~/.cache/medaudit/``):

1. a standard ResNet-18 (``auditor.architectures.ResNet18``, width 8, 64x64 input) trained
   by ``examples/train_isic_classifier.py --arch resnet18 --width 8 --epochs 8`` (Adam lr
   1e-3, class-weighted CE, flips). At 64x64 from scratch this is a weak classifier (val
   AUROC 0.72; at its own threshold it flags most lesions as melanoma), so every table
   also gives the per-class numbers;
2. ``medaudit harden`` on the ISIC train split: PGD-AT at 4/255 (3 PGD steps of 2.5*eps/3
   with a random start, class-weighted CE, Adam lr 5e-4, 3 epochs of fine-tuning from the
   standard model; 10% of the train split held out for the log);
3. ``medaudit run`` on the 150 validation images, standard vs hardened: FGSM, PGD, CW,
   AutoAttack (APGD + Square) and Square at 2, 4, 8 /255 (``--budget quick``, cascade), and
   the before/after evidence the report cites;
4. ``medaudit run --defense`` on the standard model for each preprocessing defense
   (FGSM + PGD, quick budget): adaptive numbers (BPDA / EoT) next to the non-adaptive ones
   and the undefended baseline;
5. a Mahalanobis detector on penultimate features, fitted on the train split: detection
   AUROC per attack and eps, then under the adaptive attack.

    python examples/defend_isic.py --out defend-isic
    python examples/defend_isic.py --skip detection,defenses   # only the hardening check

Writes ``summary.json`` and ``summary.md`` (the tables) to ``--out``, and one audit folder
per model or defense. Cite ISIC 2017 (Codella et al. 2017) when reporting the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))

from auditor.config import AuditConfig  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
CACHE = Path(os.environ.get("MEDAUDIT_CACHE", Path.home() / ".cache" / "medaudit"))
DEFENSES = ("jpeg:quality=75", "median:size=3", "bit-depth:bits=4", "tv:weight=0.05,steps=30",
            "random-smoothing:sigma=0.05,samples=32,eot_samples=8")


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def audit(model: Path, data: Path, out: Path, *, split: str, classes: list[str] | None, eps: list[float],
          attacks: list[str], budget: str, task: str | None = None, defense: str | None = None,
          input_size: tuple[int, int] = (64, 64), seed: int = 0, reuse: bool = True) -> dict[str, Any]:
    """``medaudit run`` in-process (no reports); reuses a finished results.json in ``out``."""
    from auditor.audit import run_audit
    from auditor.cli.common import RichProgress
    from auditor.registry import get_registry

    done = out / "results.json"
    if reuse and done.is_file():
        results = json.loads(done.read_text())
        if results.get("status") == "complete":
            return results
    config = AuditConfig(model=model, data=data, out=out, split=split, classes=classes, modality="dermoscopy",
                         input_size=input_size, channels=3, eps_255=eps, attacks=attacks, budget=budget, seed=seed,
                         device="cpu", formats=[], checks=False, task=task, defense=defense)
    t0 = time.perf_counter()
    results = run_audit(config, get_registry(), progress=RichProgress(), command=f"defend example: {out.name}")
    results["example_wall_s"] = time.perf_counter() - t0
    done.write_text(json.dumps(results))
    return results


def worst_row(results: dict[str, Any]) -> dict[str, Any]:
    per_class = {}
    for w in results["worst_case"]:
        for name, block in w["per_class"].items():
            per_class.setdefault(name, {})[f"{w['eps_255']:g}"] = block["accuracy"]
    clean_per_class = {k: v["accuracy"] for k, v in results["clean"]["per_class"].items()}
    balanced = {e: sum(accs[e] for accs in per_class.values()) / len(per_class)
                for e in next(iter(per_class.values()), {})}
    return {"clean": results["clean"]["accuracy"], "clean_per_class": clean_per_class,
            "clean_balanced": sum(clean_per_class.values()) / max(len(clean_per_class), 1),
            "worst_case": {f"{w['eps_255']:g}": w["robust_accuracy"] for w in results["worst_case"]},
            "worst_case_balanced": balanced,
            "worst_case_per_class": per_class, "time_s": results.get("example_wall_s")}


def harden_model(model: Path, data: Path, out: Path, **settings: Any) -> dict[str, Any]:
    from auditor.cli.common import RichProgress
    from auditor.hardening import HardenConfig, harden, log_path_for
    from auditor.registry import get_registry

    log_path = log_path_for(out)
    if out.is_file() and log_path.is_file():
        return json.loads(log_path.read_text())
    return harden(HardenConfig(model=model, data=data, out=out, **settings), get_registry(), progress=RichProgress())


def detection(model_path: Path, data: Path, split_train: str, split_eval: str, eps: list[float],
              size: int, seed: int, fit_limit: int | None) -> dict[str, Any]:
    from auditor.cli.common import RichProgress
    from auditor.datasets import open_dataset
    from auditor.evaluation.detection import MahalanobisDetector, detection_audit
    from auditor.interfaces import DataOptions
    from auditor.registry import get_registry

    registry = get_registry()
    model = torch.jit.load(str(model_path)).eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def load(split: str, limit: int | None = None):
        ds = open_dataset(registry, data, DataOptions(channels=3, input_size=(size, size), split=split, limit=limit,
                                                      seed=seed))
        batch = ds.load(list(range(len(ds))))
        return batch.images, batch.targets

    t0 = time.perf_counter()
    x_fit, y_fit = load(split_train, fit_limit)
    detector = MahalanobisDetector(model).fit(x_fit, y_fit)
    x, y = load(split_eval)
    report = detection_audit(model, detector, x, y, eps_255=eps, registry=registry, attacks=("fgsm", "pgd", "cw"),
                             budget="quick", seed=seed, progress=RichProgress())
    report["wall_s"] = time.perf_counter() - t0
    return report


def markdown(summary: dict[str, Any]) -> str:
    lines = [f"# {summary['title']}", "", summary["settings_text"], ""]
    hard = summary.get("hardening")
    if hard:
        eps = list(hard["standard"]["worst_case"])
        lines += ["## Adversarial training (worst case over the audit battery)", "",
                  "| model | clean | " + " | ".join(f"worst case @ {e}/255" for e in eps) + " |",
                  "|---|---|" + "---|" * len(eps)]
        for name in ("standard", "hardened"):
            row = hard[name]
            lines.append(f"| {name} | {pct(row['clean'])} | " + " | ".join(pct(row["worst_case"][e]) for e in eps) + " |")
        for name in ("standard", "hardened"):
            row = hard[name]
            lines.append(f"| {name}, balanced (mean over classes) | {pct(row['clean_balanced'])} | "
                         + " | ".join(pct(row["worst_case_balanced"].get(e)) for e in eps) + " |")
            for cls, accs in row["worst_case_per_class"].items():
                lines.append(f"| {name}, class {cls} | {pct(row['clean_per_class'].get(cls))} | "
                             + " | ".join(pct(accs.get(e)) for e in eps) + " |")
        lines += ["", f"Evidence: {hard['evidence']['message']}.", "",
                  f"Training: {hard['training']['train_s']:.0f} s; held-out log: {hard['training']['log_message']}.", ""]
    seg = summary.get("segmentation")
    if seg:
        eps = list(seg["standard"]["worst_case"])
        lines += ["## U-Net: mean Dice, clean and under PGD-Dice", "",
                  "| model | clean Dice | " + " | ".join(f"PGD-Dice @ {e}/255" for e in eps) + " |",
                  "|---|---|" + "---|" * len(eps)]
        for name in ("standard", "hardened"):
            row = seg[name]
            lines.append(f"| {name} | {row['clean']:.3f} | " + " | ".join(f"{row['worst_case'][e]:.3f}" for e in eps) + " |")
        lines += ["", seg["settings_text"], ""]
    defenses = summary.get("defenses")
    if defenses:
        eps = [f"{g['eps_255']:g}" for g in defenses[0]["gain"]]
        lines += ["## Preprocessing defenses on the standard model (worst case over FGSM + PGD)", "",
                  "| defense | adaptive method | clean | " + " | ".join(
                      f"@{e}: undefended / non-adaptive / adaptive" for e in eps) + " | gain disappears |",
                  "|---|---|---|" + "---|" * len(eps) + "---|"]
        for d in defenses:
            cells = " | ".join(f"{pct(g['undefended'])} / {pct(g['non_adaptive'])} / {pct(g['adaptive'])}" for g in d["gain"])
            lines.append(f"| {d['title']} | {d['method']} | {pct(d['clean'])} (undefended {pct(d['clean_undefended'])}) "
                         f"| {cells} | {'yes' if d['gain_disappears_under_adaptive'] else 'no'} |")
        lines.append("")
    det = summary.get("detection")
    if det:
        lines += ["## Mahalanobis detector (penultimate features)", "",
                  f"{det['n_clean_correct']} clean-correct images; threshold at {det['fpr_target']:.0%} false alarms.", "",
                  "| attack | eps | successful | AUROC (successful) | AUROC (all) | detected @5% FPR | silent errors |",
                  "|---|---|---|---|---|---|---|"]
        for r in det["attacks"]:
            lines.append(f"| {r['attack']} | {r['eps_255']:g} | {r['n_successful']} | {r['auroc']:.3f} | "
                         f"{r['auroc_all']:.3f} | {pct(r['tpr_at_5fpr'])} | {pct(r['undetected_success_rate'])} |")
        for a in det["adaptive"]:
            lines.append(f"| adaptive (CE - lambda * score) | {a['eps_255']:g} | {a['n_successful']} | {a['auroc']:.3f} | "
                         f"{a['auroc_all']:.3f} | {pct(a['tpr_at_5fpr'])} | {pct(a['evasion_rate'])} |")
        lines.append("")
    return "\n".join(lines)


def defense_rows(results: dict[str, Any]) -> dict[str, Any]:
    block = results["defense"]
    return {"spec": block["spec"], "title": block["title"], "method": block["adaptive"]["method"],
            "clean": block["adaptive"]["clean_accuracy"], "clean_undefended": block["undefended"]["clean_accuracy"],
            "clean_non_adaptive": block["non_adaptive"]["clean_accuracy"], "gain": block["gain"],
            "gain_disappears_under_adaptive": block["gain_disappears_under_adaptive"], "verdict": block["verdict"],
            "time_s": results.get("example_wall_s")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "isic2017" / "labels.csv")
    parser.add_argument("--out", type=Path, default=Path("defend-isic"))
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--std-epochs", type=int, default=8)
    parser.add_argument("--at-epochs", type=int, default=3)
    parser.add_argument("--at-steps", type=int, default=3)
    parser.add_argument("--at-lr", type=float, default=5e-4)
    parser.add_argument("--eps", default="2,4,8")
    parser.add_argument("--attacks", default="fgsm,pgd,cw,autoattack,square")
    parser.add_argument("--defense-attacks", default="fgsm,pgd")
    parser.add_argument("--budget", default="quick", choices=("quick", "standard", "thorough"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: hardening, defenses, detection")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"ISIC 2017 not found at {args.data}", file=sys.stderr)
        return 3
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    eps = [float(e) for e in args.eps.split(",")]
    classes = ["benign", "melanoma"]
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary.update({"title": "Defenses measured on ISIC 2017 (64x64, ResNet-18)", "data": str(args.data)})

    from train_isic_classifier import train  # examples/train_isic_classifier.py

    t0 = time.perf_counter()
    standard = train("resnet18", args.std_epochs, 64, args.seed, args.data, width=args.width)
    at_path = CACHE / f"isic_resnet18_w{args.width}_64px_pgdat4_e{args.at_epochs}_k{args.at_steps}_s{args.seed}.pt"
    summary["settings_text"] = (
        f"Standard model: ResNet-18 width {args.width}, 64x64, {args.std_epochs} epochs (examples/train_isic_classifier.py). "
        f"PGD-AT: eps 4/255, {args.at_steps} steps of 2.5*eps/{args.at_steps}, random start, {args.at_epochs} epochs of "
        f"fine-tuning from the standard model, Adam lr {args.at_lr:g}, class-weighted CE, train split minus a seeded 10% hold-out. "
        f"Audits: ISIC 2017 val split (150 images), attacks {args.attacks}, budget {args.budget}, cascade, eps {args.eps} /255, "
        f"seed {args.seed}; defenses audited with {args.defense_attacks}. CPU, 1 thread per process, machine shared.")

    if "hardening" not in skip:
        log = harden_model(standard, args.data, at_path, method="pgd-at", eps_255=4.0, epochs=args.at_epochs,
                           steps=args.at_steps, lr=args.at_lr, split="train", input_size=(64, 64), channels=3,
                           classes=classes, seed=args.seed, eval_steps=10, device="cpu")
        attacks = args.attacks.split(",")
        before = audit(standard, args.data, args.out / "audit-standard", split="val", classes=classes, eps=eps,
                       attacks=attacks, budget=args.budget, seed=args.seed)
        after = audit(at_path, args.data, args.out / "audit-pgd-at", split="val", classes=classes, eps=eps,
                      attacks=attacks, budget=args.budget, seed=args.seed)
        from auditor.hardening import evidence_from_audits

        summary["hardening"] = {
            "standard": worst_row(before), "hardened": worst_row(after),
            "evidence": evidence_from_audits(before, after, log, eps_255=4.0),
            "training": {"train_s": log["train_s"], "log_message": log["evidence"]["message"],
                         "epochs": [{k: e[k] for k in ("epoch", "loss", "clean_accuracy", "pgd_accuracy",
                                                       "clean_balanced_accuracy", "pgd_balanced_accuracy", "train_s")}
                                    for e in log["epochs"]]},
        }
        summary_path.write_text(json.dumps(summary, indent=1))

    if "defenses" not in skip:
        rows = []
        for spec in DEFENSES:
            folder = args.out / ("defense-" + spec.split(":")[0])
            results = audit(standard, args.data, folder, split="val", classes=classes, eps=eps,
                            attacks=args.defense_attacks.split(","), budget=args.budget, seed=args.seed, defense=spec)
            rows.append(defense_rows(results))
            summary["defenses"] = rows
            summary_path.write_text(json.dumps(summary, indent=1))

    if "detection" not in skip:
        summary["detection"] = detection(standard, args.data, "train", "val", eps, 64, args.seed, fit_limit=None)
        summary_path.write_text(json.dumps(summary, indent=1))

    summary["wall_s"] = time.perf_counter() - t0
    summary_path.write_text(json.dumps(summary, indent=1))
    (args.out / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

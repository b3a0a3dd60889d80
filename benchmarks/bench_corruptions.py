"""Natural robustness on a real data set (issue 17): the family x severity table, whether each
family is monotone in severity, wall time, and the corruption steps' overhead ratio.

Trains a SmallCNN (seeded, 3 epochs, balanced class weights) on the PneumoniaMNIST training split in
``../shared/data/medmnist``, then runs ``medaudit run`` as a user would on the test split
(624 chest X-rays, 28x28) with ``--modality chest-xray --corruptions default`` and one cheap
attack (FGSM at 2/255, no checks, no reports), and prints from ``results.json``:

* accuracy (%) per family and severity with the clean accuracy and the worst case;
* per family, whether accuracy never rises from one severity to the next by more than the
  tolerance (``--tolerance``, default 1 point: 6 images of 624), else the offending steps;
* the audit's wall time and the corruption steps' share of it;
* per family, the overhead ratio (transform + forward) / forward floor, the floor being the
  model's measured forward passes at the same batch sizes (``overhead.ratio``), and the
  transform's seconds.

Timings on a shared machine are noisy; the ratios are measured within one run.

    python benchmarks/bench_corruptions.py [--epochs 3] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.architectures import SmallCNN  # noqa: E402
from auditor.training import accuracy, train_classifier  # noqa: E402

NPZ = ROOT.parent / "shared" / "data" / "medmnist" / "pneumoniamnist.npz"


def train(epochs: int, seed: int) -> torch.nn.Module:
    with np.load(NPZ) as data:
        x = torch.from_numpy(data["train_images"]).float().unsqueeze(1) / 255.0
        y = torch.from_numpy(data["train_labels"].ravel()).long()
    # this copy's training split is 90% pneumonia: balanced class weights keep the model from
    # calling every test image pneumonia (62.5% of the test split), which no corruption could move
    counts = torch.bincount(y, minlength=2).float()
    weights = counts.sum() / (2 * counts)
    torch.manual_seed(seed)
    model = SmallCNN(1, 2, width=16)
    train_classifier(model, x, y, epochs=epochs, batch_size=64, lr=2e-3, seed=seed, class_weights=weights)
    print(f"trained SmallCNN on {len(x)} PneumoniaMNIST training images, {epochs} epochs; "
          f"training accuracy {accuracy(model, x, y):.3f}")
    return model


def table(results: dict) -> None:
    block = results["corruption"]
    severities = block["severities"]
    print(f"\nclean accuracy {100 * results['clean']['accuracy']:.1f}% (n={results['clean']['n']})")
    print(f"{'family':<22}" + "".join(f"{s:>8}" for s in severities) + f"{'rel.err':>9}")
    for family in block["families"]:
        row = [e for e in block["steps"] if e["family"] == family["name"]]
        rel = block["relative_error"]["per_family"].get(family["name"])
        print(f"{family['name']:<22}" + "".join(f"{100 * e['accuracy']:8.1f}" for e in row)
              + (f"{rel:9.2f}" if rel is not None else "      n/a"))
    print(f"{'worst case':<22}" + "".join(f"{100 * w['accuracy']:8.1f}" for w in block["worst_case"])
          + (f"{block['relative_error']['mean']:9.2f}" if block["relative_error"]["mean"] is not None else ""))


def monotonicity(results: dict, tolerance: float) -> None:
    block = results["corruption"]
    print(f"\nmonotone in severity (a rise of more than {100 * tolerance:g} points between neighbours breaks it):")
    for family in block["families"]:
        accs = [e["accuracy"] for e in block["steps"] if e["family"] == family["name"]]
        rises = [(i + 1, i + 2, 100 * (b - a)) for i, (a, b) in enumerate(zip(accs, accs[1:])) if b - a > tolerance]
        overall = accs[0] >= accs[-1]
        verdict = "yes" if not rises else "no: " + ", ".join(f"{a}->{b} +{d:.1f}" for a, b, d in rises)
        print(f"  {family['name']:<22} {verdict}; severity 1 >= 5: {overall}")


def overhead(results: dict, wall: float) -> None:
    steps = results["corruption"]["steps"]
    total = sum(e["time_s"] for e in steps)
    print(f"\naudit wall time {results['timing']['wall_s']:.1f} s (process {wall:.1f} s); "
          f"corruption steps {total:.1f} s ({100 * total / results['timing']['wall_s']:.0f}%)")
    print(f"{'family':<22}{'ratio':>8}{'step':>8}{'transform s':>13}{'forward s':>11}{'floor s':>9}  vectorised")
    vectorised = {f["name"]: f["vectorised"] for f in results["corruption"]["families"]}
    for name in dict.fromkeys(e["family"] for e in steps):
        rows = [e for e in steps if e["family"] == name]
        transform = sum(e["transform_s"] for e in rows)
        forward = sum(e["forward_s"] for e in rows)
        floor = sum(e["overhead"]["ideal_s"] for e in rows)
        elapsed = sum(e["time_s"] for e in rows)
        print(f"{name:<22}{(transform + forward) / floor:8.2f}{elapsed / floor:8.2f}{transform:13.3f}"
              f"{forward:11.3f}{floor:9.3f}  {vectorised[name]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="audit a stratified sample of N test images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--tolerance", type=float, default=0.01)
    args = parser.parse_args(argv)
    if not NPZ.is_file():
        print(f"skipped: {NPZ} is absent")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "pneumonia_smallcnn.pt"
        torch.jit.script(train(args.epochs, args.seed)).save(str(model_path))
        out = Path(tmp) / "out"
        command = [sys.executable, "-m", "auditor.cli", "run", str(model_path), "--data", str(NPZ),
                   "--split", "test", "--modality", "chest-xray", "--corruptions", "default",
                   "--attacks", "fgsm", "--eps", "2", "--budget", "quick", "--skip-checks",
                   "--report-format", "none", "--quiet", "--seed", str(args.seed), "--device", "cpu",
                   "--batch-size", str(args.batch_size), "--out", str(out)]
        if args.limit:
            command += ["--limit", str(args.limit)]
        print("$ medaudit " + " ".join(command[3:]))
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        wall = time.perf_counter() - started
        results = json.loads((out / "results.json").read_text())
    table(results)
    monotonicity(results, args.tolerance)
    overhead(results, wall)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

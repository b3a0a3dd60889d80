"""Where a default medaudit audit's wall time goes, on the reference workload (issue 20).

Runs ``medaudit run`` as a user would (checks and clinical targeted attacks included, the
HTML report rendered) on real ISIC 2017 images at 64x64 with the benchmark's cached
ResNet-18 (``benchmarks/workload.py``), FGSM, PGD and Square at eps 2, 4, 6, 8 /255, and
prints the time breakdown the engine records in ``results.json`` (``timing.breakdown``):
clean pass, each attack x eps step, each validity check, the targeted clinical attacks,
the detector and a defense's non-adaptive pass when configured, what no phase names, and
the reports' rendering. ``--smoke`` is a seconds-long run of the same code on a few images
(quick budget, two eps) for the test; with it, set ``MEDAUDIT_BENCH_WIDTH=8`` and a
``MEDAUDIT_BENCH_CACHE`` of its own so the narrow model trains in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import workload  # noqa: E402

ATTACKS = ("fgsm", "pgd", "square")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="ISIC images audited (default 50, as in issue 20)")
    parser.add_argument("--eps", type=lambda s: [float(v) for v in s.split(",")], default=[2.0, 4.0, 6.0, 8.0])
    parser.add_argument("--smoke", action="store_true", help="6 images, eps 2,8, quick budget, 8 check samples")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of the cached model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=workload.DEFAULT_DATA)
    parser.add_argument("--json", type=Path, default=None, help="also write the timing block to this file")
    args = parser.parse_args(argv)
    args.budget, args.check_samples = "standard", 48
    if args.smoke:
        args.n, args.eps, args.budget, args.check_samples = min(args.n, 6), [2.0, 8.0], "quick", 8
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ready = workload.model_for(args)
    if ready is None:
        return 2
    from auditor.cli.run import execute
    from auditor.config import AuditConfig
    from auditor.engine.record import breakdown_table

    model, facts = ready
    with tempfile.TemporaryDirectory(prefix="medaudit-breakdown-") as tmp:
        folder = Path(tmp)
        manifest = workload.write_audit_set(args.data, facts, args.n, args.seed, folder / "data")
        weights = workload.save_weights_copy(model, folder)
        config = AuditConfig(
            model=weights, data=manifest, out=folder / "out", arch=workload.ARCH, data_format="csv",
            input_size=workload.SIZE, channels=3, modality="dermoscopy", eps_255=list(args.eps),
            attacks=list(ATTACKS), budget=args.budget, seed=args.seed, device=args.device,
            check_samples=args.check_samples, formats=["html"],
        )
        t0 = time.perf_counter()
        results = execute(config, quiet=True, as_json=False, command="bench_breakdown.py")
        total = time.perf_counter() - t0
    timing = results["timing"]
    print(f"medaudit run on {args.n} ISIC images (64x64, ResNet-18 width {workload.WIDTH}), attacks "
          f"{','.join(ATTACKS)}, eps {','.join(f'{e:g}' for e in args.eps)}, budget {args.budget}, "
          f"{torch.get_num_threads()} threads")
    print("\n".join(breakdown_table(timing)))
    rows = timing["breakdown"]
    after = sum(r["s"] for r in rows if r["phase"] in ("check", "clinical targeted attacks"))
    share = after / timing["wall_s"] if timing["wall_s"] > 0 else 0.0
    print(f"validity checks + targeted attacks: {after:.2f} s, {100 * share:.1f}% of the audit (target <= 10%)")
    print(f"whole command (audit + reports): {total:.2f} s")
    if args.json:
        args.json.write_text(json.dumps({"timing": timing, "command_s": total, "checks_and_targeted_share": share},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

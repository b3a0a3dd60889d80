"""Where a default medaudit audit's wall time goes, on the reference workload (issue 20).

Runs ``medaudit run`` as a user would (checks and clinical targeted attacks included, the
HTML report rendered) on real ISIC 2017 images at 64x64 with the benchmark's cached
ResNet-18 (``benchmarks/workload.py``), FGSM, PGD and Square at eps 2, 4, 6, 8 /255, and
prints the time breakdown the engine records in ``results.json`` (``timing.breakdown``):
clean pass, each attack x eps step, each validity check, the targeted clinical attacks,
the detector and a defense's non-adaptive pass when configured, what no phase names, and
the reports' rendering. Then, in the same process on the same images, the peers of issue
20's targets: (b) the same ``medaudit run`` with ``--independent`` and (c) ART used directly
on the same attacks and budgets (``benchmarks/art_direct.py``), with the ratios (c)/(a)
(target >= 5) and (c)/(b) (target >= 2) and each one's worst case per eps (medaudit's must
never be above ART's); ``--no-compare`` leaves them out. ``--smoke`` is a seconds-long run of
the same code on a few images (quick budget, two eps) for the test; with it, set
``MEDAUDIT_BENCH_WIDTH=8`` and a ``MEDAUDIT_BENCH_CACHE`` of its own so the narrow model
trains in seconds.
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
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="only the default audit's breakdown: no --independent run, no ART")
    args = parser.parse_args(argv)
    args.budget, args.check_samples = "standard", 48
    if args.smoke:
        args.n, args.eps, args.budget, args.check_samples = min(args.n, 6), [2.0, 8.0], "quick", 8
    return args


def audit(args: argparse.Namespace, manifest: Path, weights: Path, out: Path, mode: str) -> tuple[dict, float]:
    """``medaudit run`` as a user runs it (checks, targeted attacks, HTML report) and its seconds;
    the process's CPU seconds go into ``results["bench_cpu_s"]``."""
    from auditor.cli.run import execute
    from auditor.config import AuditConfig

    config = AuditConfig(
        model=weights, data=manifest, out=out, arch=workload.ARCH, data_format="csv",
        input_size=workload.SIZE, channels=3, modality="dermoscopy", eps_255=list(args.eps),
        attacks=list(ATTACKS), budget=args.budget, seed=args.seed, device=args.device,
        check_samples=args.check_samples, formats=["html"], mode=mode,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    results = execute(config, quiet=True, as_json=False, command="bench_breakdown.py")
    results["bench_cpu_s"] = time.process_time() - c0
    return results, time.perf_counter() - t0


def after_share(timing: dict) -> tuple[float, float]:
    """Seconds of validity checks + targeted attacks, and their share of the audit's wall time."""
    after = sum(r["s"] for r in timing["breakdown"] if r["phase"] in ("check", "clinical targeted attacks"))
    return after, (after / timing["wall_s"] if timing["wall_s"] > 0 else 0.0)


def compare(args: argparse.Namespace, folder: Path, manifest: Path, weights: Path, a: dict, a_s: float) -> dict:
    """(b) --independent and (c) ART directly on the same images; prints the ratios."""
    from benchmarks.art_direct import run_art

    from auditor.interfaces import DataOptions
    from auditor.models import open_model
    from auditor.registry import get_registry
    from plugins.data.csv_manifest import CsvSource

    b, b_s = audit(args, manifest, weights, folder / "out-b", "independent")
    b_after, b_share = after_share(b["timing"])
    dataset = CsvSource().open(manifest, DataOptions(channels=3, input_size=workload.SIZE))
    batch = dataset.load(range(len(dataset)))
    module = open_model(get_registry(), weights, arch=workload.ARCH, device=args.device).module
    c = run_art(module, batch.images, batch.targets, a, batch_size=32, seed=args.seed, log=lambda m: None)
    print(f"(a) default: {a_s:.2f} s wall, {a['bench_cpu_s']:.2f} s CPU")
    print(f"(b) --independent: {b_s:.2f} s wall, {b['bench_cpu_s']:.2f} s CPU "
          f"(checks + targeted attacks {b_after:.2f} s, {100 * b_share:.1f}%)")
    print(f"(c) ART directly: {c['wall_s']:.2f} s wall, {c['cpu_s']:.2f} s CPU (FGSM, PGD {c['pgd']['steps']} steps, Square "
          f"{c['square_queries']} iterations, every image at every eps; "
          f"{c['passes']['forward_samples']} forward, {c['passes']['backward_samples']} backward sample passes)")
    ratios = {"c/a": c["wall_s"] / a_s, "c/b": c["wall_s"] / b_s,
              "cpu c/a": c["cpu_s"] / a["bench_cpu_s"], "cpu c/b": c["cpu_s"] / b["bench_cpu_s"]}
    # CPU seconds as well: on a machine shared with other jobs they move far less than wall time
    print(f"ratio ART / default audit (c/a): {ratios['c/a']:.2f} wall, {ratios['cpu c/a']:.2f} CPU (target >= 5)")
    print(f"ratio ART / --independent (c/b): {ratios['c/b']:.2f} wall, {ratios['cpu c/b']:.2f} CPU (target >= 2)")
    worst = {"a": {w["eps_255"]: w["robust_accuracy"] for w in a["worst_case"]},
             "b": {w["eps_255"]: w["robust_accuracy"] for w in b["worst_case"]}, "c": c["worst_case"]}
    for key, label in (("a", "(a) default"), ("b", "(b) --independent"), ("c", "(c) ART")):
        print(f"worst-case robust accuracy {label:<18} " + "  ".join(f"{e:g}: {v:.3f}" for e, v in worst[key].items()))
    never_higher = all(worst[k][e] <= worst["c"][e] + 1e-9 for k in ("a", "b") for e in worst["c"])
    print(f"medaudit's worst case never above ART's: {'yes' if never_higher else 'NO'}")
    return {"b_s": b_s, "b_checks_and_targeted_share": b_share, "art": c, "ratios": ratios, "worst_case": worst,
            "never_above_art": never_higher}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ready = workload.model_for(args)
    if ready is None:
        return 2
    from auditor.engine.record import breakdown_table

    model, facts = ready
    with tempfile.TemporaryDirectory(prefix="medaudit-breakdown-") as tmp:
        folder = Path(tmp)
        manifest = workload.write_audit_set(args.data, facts, args.n, args.seed, folder / "data")
        weights = workload.save_weights_copy(model, folder)
        results, total = audit(args, manifest, weights, folder / "out", "cascade")
        timing = results["timing"]
        print(f"medaudit run on {args.n} ISIC images (64x64, ResNet-18 width {workload.WIDTH}), attacks "
              f"{','.join(ATTACKS)}, eps {','.join(f'{e:g}' for e in args.eps)}, budget {args.budget}, "
              f"{torch.get_num_threads()} threads")
        print("\n".join(breakdown_table(timing)))
        after, share = after_share(timing)
        print(f"validity checks + targeted attacks: {after:.2f} s, {100 * share:.1f}% of the audit (target <= 10%)")
        targeted = results.get("targeted") or {}
        if targeted.get("per_eps"):
            passes = targeted.get("passes") or {}
            print("clinical targeted attacks: samples attacked per eps "
                  + ", ".join(f"{r['eps_255']:g}: {r.get('attacked', '?')}" for r in targeted["per_eps"])
                  + f" of {args.n}; {passes.get('forward_samples')} forward and {passes.get('backward_samples')} "
                  "backward sample passes")
        print(f"whole command (audit + reports): {total:.2f} s")
        peers = compare(args, folder, manifest, weights, results, total) if args.compare else None
    if args.json:
        args.json.write_text(json.dumps({"timing": timing, "command_s": total, "checks_and_targeted_share": share,
                                         "compare": peers}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""--engine local against --engine ray --workers 2 --cpus-per-worker 1 on the same
attack-heavy audit, in one run (issue 19).

Builds the demo's model and synthetic lesions (``auditor.demo.build_demo``, offline), then
runs ``medaudit run`` twice on them as a user would: PGD (native), Square and ZOO at the
quick budget, eps 2 and 8 /255, checks and reports off (the engine's attack steps are what
Ray shards; the checks run on the driver either way). Prints both wall times, their ratio
(target >= 1.6 on 2 cores), whether the two results.json agree (decisions exactly, floats
to float32 rounding), and the driver's own share of the Ray run's wall time (merge and
checkpoints, target < 5%). The machine may be shared: the ratio is noisy, so both runs
are in one process, one after the other, and ``--repeat`` alternates them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from auditor.cli import app  # noqa: E402
from auditor.demo import build_demo  # noqa: E402
from tests.distributed.identity import differences, numbers  # noqa: E402


LOADS: list[float] = []  # the 1-minute load average as each run started


def audit(model: Path, data: Path, out: Path, n: int, extra: list[str]) -> tuple[float, dict]:
    args = ["run", str(model), "--data", str(data), "--attacks", "pgd,square,zoo", "--backend", "pgd=native",
            "--eps", "2,8", "--budget", "quick", "--limit", str(n), "--skip-checks", "--report-format", "none",
            "--quiet", "--no-sandbox", "--out", str(out), "--overwrite", *extra]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, args)
    wall = time.perf_counter() - t0
    if result.exit_code != 0:
        raise SystemExit(f"medaudit run {' '.join(extra)} failed: {result.output}")
    LOADS.append(load)  # a second OpenMP thread stalls badly when anything else wants a core: say so
    return wall, json.loads((out / "results.json").read_text())


# Values computed from an adversarial image's float pixels. Torch's float32 kernels at one
# thread per Ray worker and at two threads locally round differently, and a PGD sign step
# taken on a gradient component that rounds to either side moves a pixel, so these may
# differ beyond float32 rounding while every prediction, count and decision is the same.
FLOAT_ONLY = ("perturbation", "confidence", "_png")


def agreement(diffs: list[str]) -> dict:
    floats = [d for d in diffs if any(key in d.split(":")[0] for key in FLOAT_ONLY)]
    return {"same_decisions": len(floats) == len(diffs), "float_differences": floats,
            "decision_differences": [d for d in diffs if d not in floats]}


def steps_s(results: dict) -> float:
    """Wall seconds of the attack steps: a local run's step rows, a Ray run's shards after
    its workers started (the rows of ``timing.breakdown``)."""
    rows = results["timing"]["breakdown"]
    return sum(r["s"] for r in rows if r["phase"] == "attack" or r["phase"].startswith("ray: attack steps"))


def threads_probe(model: Path, data: Path, out: Path, n: int) -> tuple[float, dict]:
    """The local audit at one torch thread: what one Ray worker does, with the whole data set."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return audit(model, data, out, n, [])
    finally:
        torch.set_num_threads(before)


def per_step(results: dict) -> dict[str, float]:
    return {f"{e['attack']}@{e['eps_255']:g}": float(e["time_s"]) for e in results["attacks"]}


def step_table(row: dict) -> None:
    """Per step: local seconds at 2 and 1 threads, and the Ray workers' seconds summed (what
    the two workers computed; at 1 thread each, equal to the 1-thread local run when Ray adds
    nothing to the compute)."""
    print(f"{'step':<14} {'local 2 thr':>11} {'local 1 thr':>11} {'ray workers':>11}")
    for key, local_s in row["steps_local"].items():
        one = row.get("steps_local1", {}).get(key)
        print(f"{key:<14} {local_s:11.2f} {one if one is not None else float('nan'):11.2f} "
              f"{row['steps_ray'][key]:11.2f}")


def report(row: dict) -> None:
    step_table(row)
    ph = row["phases"]
    print(f"local ({row['threads']} torch threads): {row['local_s']:.1f} s (attack steps {row['local_steps_s']:.1f} s)")
    if row.get("local1_s") is not None:
        print(f"local at 1 torch thread: {row['local1_s']:.1f} s (attack steps {row['local1_steps_s']:.1f} s): "
              f"2 threads run the steps {row['thread_gain']:.2f}x faster than 1; so 2 workers x 1 thread can "
              f"beat local by at most {row['ceiling']:.2f}x on the steps")
    print(f"ray (2 workers x 1 CPU): {row['ray_s']:.1f} s: ray.init {ph['ray_init_s']:.1f} s, workers' start "
          f"{ph['workers_start_s']:.1f} s (model and data {ph['workers_open_s']:.1f} s), attack steps "
          f"{row['ray_steps_s']:.1f} s ({row['shards']} shards, workers busy {100 * row['busy_after_start']:.0f}% after their "
          f"start, {100 * (ph['worker_busy_share'] or 0):.0f}% with it, "
          f"tail idle {ph['tail_idle_s']:.1f} s), merge {ph['merge_s']:.3f} s, checkpoints {ph['checkpoint_s']:.3f} s")
    print(f"RATIO local/ray {row['ratio']:.2f}x (target >= 1.6); attack steps only {row['steps_ratio']:.2f}x; "
          f"Ray start-up {row['startup_s']:.1f} s = {100 * row['startup_share']:.1f}% of the ray run; driver "
          f"merge+checkpoints {100 * row['driver_share']:.2f}% (target < 5%); same decisions: {row['same_decisions']}; "
          f"float differences beyond float32 rounding: {len(row['float_differences'])}")
    print(f"load average (1 min) as each run started: {', '.join(f'{x:.2f}' for x in row['loads'])} "
          "(local, [local 1 thread], ray; it includes this benchmark's previous run, about 1-2 after a local run: "
          "well above 2 means other work and a noisy ratio)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=800, help="images audited (default 800: local about 60-90 s on 2 idle cores)")
    parser.add_argument("--repeat", type=int, default=1, help="alternate local and ray this many times")
    parser.add_argument("--no-probe", action="store_true", help="skip the local run at 1 torch thread")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    model, data, _ = build_demo(work, seed=0, n_test_per_class=max(args.n // 2, 2))
    ray_flags = ["--engine", "ray", "--workers", "2", "--cpus-per-worker", "1"]
    rows = []
    for _ in range(args.repeat):
        local_s, local = audit(model, data, work / "local", args.n, [])
        row = {"n": args.n, "threads": torch.get_num_threads(), "local_s": local_s, "local_steps_s": steps_s(local),
               "steps_local": per_step(local)}
        if not args.no_probe:
            local1_s, local1 = threads_probe(model, data, work / "local1", args.n)
            row.update(local1_s=local1_s, local1_steps_s=steps_s(local1), steps_local1=per_step(local1))
            row["thread_gain"] = row["local1_steps_s"] / row["local_steps_s"]
            row["ceiling"] = 2 / row["thread_gain"]
        ray_s, ray = audit(model, data, work / "ray", args.n, ray_flags)
        engine = ray["engine"]
        phases = engine["phases"]
        startup = phases["ray_init_s"] + phases["workers_start_s"]
        after_start = 2 * max(engine["shards_s"] - phases["workers_start_s"], 1e-9)
        row["busy_after_start"] = phases["shards_compute_s"] / after_start
        row.update(ray_s=ray_s, ray_steps_s=steps_s(ray), steps_ray=per_step(ray), shards=engine["shards"], phases=phases,
                   ratio=local_s / ray_s, steps_ratio=row["local_steps_s"] / steps_s(ray),
                   startup_s=startup, startup_share=startup / ray_s, driver_share=engine["driver_s"] / ray_s,
                   **agreement(differences(numbers(local), numbers(ray))))
        row["loads"] = LOADS[-(3 if not args.no_probe else 2):]
        rows.append(row)
        report(row)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

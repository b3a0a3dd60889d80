"""Benchmark: what the model sandbox (issue 12, item 3) costs on the demo's audit.

Builds the demo's inputs (synthetic lesions, the SmallCNN trained for ~10 s), then runs
``medaudit run`` on them exactly as ``medaudit demo`` audits them (32x32, 3 channels,
``--budget quick``, every attack, validity checks, HTML and PDF) as a real subprocess,
``--repeats`` times with the sandbox and as many without (``--no-sandbox``), alternating,
and prints the median wall and CPU times (user + system, of the whole process tree: on a
machine shared with other jobs, CPU time is the steadier measure) and their ratios. The
sandboxed run pays for a second interpreter start (imports of torch, ART, the plugins)
and a fresh fontconfig cache in its private temp folder; the audit runs at the same speed.

Run from the repository root::

    python benchmarks/sandbox_overhead.py               # 3 + 3 runs of the whole battery: ~20 min on 2 cores
    python benchmarks/sandbox_overhead.py --repeats 1 --attacks fgsm     # smoke run
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def audit_command(model: Path, data: Path, out: Path, attacks: str | None) -> list[str]:
    command = [sys.executable, "-m", "auditor.cli", "run", str(model), "--data", str(data), "--out", str(out),
               "--modality", "dermoscopy", "--input-size", "32", "--channels", "3", "--budget", "quick",
               "--device", "cpu", "--seed", "0", "--quiet"]
    return command + (["--attacks", attacks] if attacks else [])


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``command`` and every process it starts and waits for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attacks", default=None, help="default: the demo's whole battery")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for every run: on a shared machine 1 avoids OpenMP spin-waits "
                             "that inflate both wall and CPU time at random")
    args = parser.parse_args()

    from auditor.demo import build_demo

    env = {k: v for k, v in os.environ.items() if k != "MEDAUDIT_SANDBOX"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)

    with tempfile.TemporaryDirectory(prefix="medaudit-sandbox-bench-") as tmp:
        model, data, _ = build_demo(Path(tmp) / "inputs", seed=0)
        times: dict[str, list[tuple[float, float]]] = {"sandbox": [], "no-sandbox": []}
        for i in range(args.repeats):
            for mode in ("sandbox", "no-sandbox") if i % 2 == 0 else ("no-sandbox", "sandbox"):
                command = audit_command(model, data, Path(tmp) / f"{mode}-{i}", args.attacks)
                wall, cpu = timed(command + (["--no-sandbox"] if mode == "no-sandbox" else []), env)
                times[mode].append((wall, cpu))
                print(f"run {i + 1} {mode:>10}: wall {wall:6.1f} s, CPU {cpu:6.1f} s", flush=True)
    for k, name in enumerate(("wall", "CPU")):
        with_sandbox = statistics.median(t[k] for t in times["sandbox"])
        without = statistics.median(t[k] for t in times["no-sandbox"])
        print(f"{name}: median with sandbox {with_sandbox:.1f} s, without {without:.1f} s, "
              f"ratio {with_sandbox / without:.3f} (overhead {100 * (with_sandbox / without - 1):+.1f}%)")


if __name__ == "__main__":
    main()

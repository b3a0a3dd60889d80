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
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from typer.testing import CliRunner  # noqa: E402

from auditor.cli import app  # noqa: E402
from auditor.demo import build_demo  # noqa: E402
from tests.distributed.identity import differences, numbers  # noqa: E402


def audit(model: Path, data: Path, out: Path, n: int, extra: list[str]) -> tuple[float, dict]:
    args = ["run", str(model), "--data", str(data), "--attacks", "pgd,square,zoo", "--backend", "pgd=native",
            "--eps", "2,8", "--budget", "quick", "--limit", str(n), "--skip-checks", "--report-format", "none",
            "--quiet", "--no-sandbox", "--out", str(out), "--overwrite", *extra]
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, args)
    wall = time.perf_counter() - t0
    if result.exit_code != 0:
        raise SystemExit(f"medaudit run {' '.join(extra)} failed: {result.output}")
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40, help="images audited (default 40)")
    parser.add_argument("--repeat", type=int, default=1, help="alternate local and ray this many times")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    model, data, _ = build_demo(work, seed=0, n_test_per_class=max(args.n // 2, 2))
    ray_flags = ["--engine", "ray", "--workers", "2", "--cpus-per-worker", "1"]
    rows = []
    for _ in range(args.repeat):
        local_s, local = audit(model, data, work / "local", args.n, [])
        ray_s, ray = audit(model, data, work / "ray", args.n, ray_flags)
        engine = ray["engine"]
        rows.append({"local_s": local_s, "ray_s": ray_s, "ratio": local_s / ray_s,
                     "driver_share": engine["driver_s"] / ray_s, "shards_s": engine["shards_s"],
                     **agreement(differences(numbers(local), numbers(ray)))})
    for row in rows:
        print(f"local {row['local_s']:.1f} s, ray (2 workers x 1 CPU) {row['ray_s']:.1f} s (shards "
              f"{row['shards_s']:.1f} s): ratio {row['ratio']:.2f}x; driver merge+checkpoints "
              f"{100 * row['driver_share']:.2f}% of the ray run; same decisions: {row['same_decisions']}; "
              f"float differences beyond float32 rounding: {len(row['float_differences'])}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

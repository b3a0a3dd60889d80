"""Project a measured GPU audit to more images and more GPUs (issue 19), from its results.json.

An audit's attack steps on a GPU are partly bound by latency, not arithmetic: Square and ZOO
send 1,000 small batches one after the other, and each model call costs a fixed launch time
plus a per-image time. The per-image times are the audit's own measurement
(``timing.one_pass``: one forward, one forward+backward at the batch size); the fixed cost per
call is fitted by least squares over the audit's steps,

    step seconds = a_f * forward calls + a_b * backward calls + f * forward images + (fb - f) * backward images

and then replays every step with the images scaled to ``--images`` and split over ``--gpus``
shards (Ray's sample sharding: each shard runs the whole cascade on its images, so a shard
makes the same number of calls with fewer images per call). The clinical targeted attacks and
the rest are scaled by images (they run on the driver after the shards); the checks are taken
as measured (a fixed subsample). It is an estimate: it assumes the images of the bigger set
break in the same proportions and that shards balance.

    python benchmarks/project_gpu.py results.json --images 1000 --gpus 1,4,16
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def fit(attacks: list[dict], one_pass: dict) -> np.ndarray:
    """``[a_f, a_b, f, fb - f]``: per-call latencies fitted, per-image costs as measured."""
    f = float(one_pass["forward_s_per_sample"])
    b = float(one_pass["forward_backward_s_per_sample"]) - f
    calls = np.asarray([[a["passes"]["forward_calls"], a["passes"]["backward_calls"]] for a in attacks], dtype=float)
    residual = np.asarray([a["time_s"] - f * a["passes"]["forward_samples"] - b * a["passes"]["backward_samples"]
                           for a in attacks])
    latency, *_ = np.linalg.lstsq(calls, residual, rcond=None)
    return np.concatenate([np.clip(latency, 0.0, None), [f, b]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--gpus", default="1,4,16")
    args = parser.parse_args(argv)
    r = json.loads(args.results.read_text())
    n = int(r["clean"]["n"])
    attacks = [a for a in r["attacks"] if a.get("passes") and a.get("time_s") is not None]
    coef = fit(attacks, r["timing"]["one_pass"])
    predicted = sum(float(np.dot(coef, [a["passes"]["forward_calls"], a["passes"]["backward_calls"],
                                        a["passes"]["forward_samples"], a["passes"]["backward_samples"]]))
                    for a in attacks)
    measured = sum(a["time_s"] for a in attacks)
    targeted = float((r.get("targeted") or {}).get("time_s") or 0.0)
    checks = sum(float((i.get("cost") or {}).get("time_s") or 0.0) for i in (r.get("checks") or {}).get("items", []))
    rest = float(r["timing"]["wall_s"]) - measured - targeted - checks
    print(f"measured: {n} images on {r['environment'].get('gpu', r['environment']['device'])}, "
          f"wall {r['timing']['wall_s']:.1f} s: attack steps {measured:.1f} s, clinical targeted {targeted:.1f} s, "
          f"checks {checks:.1f} s, the rest {rest:.1f} s")
    print(f"model: {1e3 * coef[0]:.2f} ms per forward call + {1e3 * coef[1]:.2f} ms per backward call (fitted) + "
          f"{1e3 * coef[2]:.3f} ms per forward image + {1e3 * coef[3]:.3f} ms per backward image (measured) "
          f"(replays the measured steps as {predicted:.1f} s vs {measured:.1f} s)")
    scale = args.images / n
    print(f"projection to {args.images} images (an estimate; same break proportions, balanced shards):")
    for g in [int(v) for v in args.gpus.split(",")]:
        steps = sum(float(np.dot(coef, [a["passes"]["forward_calls"], a["passes"]["backward_calls"],
                                         a["passes"]["forward_samples"] * scale / g,
                                         a["passes"]["backward_samples"] * scale / g])) for a in attacks)
        # upper bound: every image through every step (a robust model), same passes per attacked image
        upper = sum(float(np.dot(coef, [a["passes"]["forward_calls"], a["passes"]["backward_calls"],
                                         a["passes"]["forward_samples"] / a["n_attacked"] * args.images / g,
                                         a["passes"]["backward_samples"] / a["n_attacked"] * args.images / g]))
                    for a in attacks if a.get("n_attacked"))
        serial = targeted * scale + checks + rest * scale
        print(f"  {g:3d} GPU(s): sharded attack steps {steps / 60:6.1f} min + on the driver {serial / 60:5.1f} min "
              f"= {(steps + serial) / 60:6.1f} min (every image through every step: {(upper + serial) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

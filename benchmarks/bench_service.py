"""medaudit's query throughput against an inference service, next to a bare client loop.

Starts KServe's Python ModelServer (``tests/service/kserve_server.py``; ``pip install
kserve``) serving a small CNN on 1x28x28 images, then, in one process and interleaved
round by round (the machine may be shared; ratios measured side by side are what counts):

* ``bare``: a plain ``http.client`` keep-alive loop POSTing identical Open Inference Protocol
  JSON batches and decoding the answers, the fastest a client can go;
* ``medaudit``: the same batches through the query-only target an audit uses
  (``plugins.models.kserve_v2.V2Target.query``: request building, retries, rate limiter,
  response checks, counting), at ``--concurrency 1`` and at ``K``;
* ``audit``: a whole ``medaudit run URL --attacks square`` step on real pneumoniamnist images
  (when ``../shared/data`` is there): images the attack queried per second of attack time,
  against the bare loop at the step's mean batch size.

Run from the repository root: ``python benchmarks/bench_service.py [--batch 32 --requests 60
--rounds 3 --concurrency 2]``. Prints images/s and the ratios (target >= 0.8).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.interfaces import ModelOptions  # noqa: E402
from plugins.models.kserve_v2 import KServeV2Loader  # noqa: E402
from tests.service.conftest import V2Server, XrayNet  # noqa: E402

NPZ = ROOT.parent / "shared" / "data" / "medmnist" / "pneumoniamnist.npz"


def bare_loop(port: int, batches: list[np.ndarray]) -> float:
    """Images per second of a plain keep-alive client sending ``batches``."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    start = time.perf_counter()
    for x in batches:
        body = json.dumps({"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "FP32",
                                       "data": x.ravel().tolist()}]}, separators=(",", ":")).encode()
        conn.request("POST", "/v2/models/classifier/infer", body=body, headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        np.asarray(json.loads(reply.read())["outputs"][0]["data"], dtype=np.float32)
    conn.close()
    return sum(len(x) for x in batches) / (time.perf_counter() - start)


def medaudit_loop(url: str, batches: list[np.ndarray], concurrency: int) -> float:
    target = KServeV2Loader().load(url, ModelOptions(extra={"concurrency": concurrency}))
    start = time.perf_counter()
    for x in batches:
        target.query(x)
    seconds = time.perf_counter() - start
    target.client.close()
    return sum(len(x) for x in batches) / seconds


def audit_step(url: str, out: Path, limit: int) -> tuple[float, int] | None:
    """(images/s of the Square step, its mean batch size) from a real audit's results.json."""
    if not NPZ.exists():
        return None
    cmd = [sys.executable, "-m", "auditor.cli", "run", url, "--data", str(NPZ), "--split", "test", "--limit",
           str(limit), "--attacks", "square", "--eps", "8", "--budget", "quick", "--skip-checks",
           "--report-format", "none", "--quiet", "--out", str(out), "--overwrite"]
    subprocess.run(cmd, cwd=ROOT, check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    entry = json.loads((out / "results.json").read_text())["attacks"][0]
    passes = entry["passes"]
    return passes["forward_samples"] / entry["attack_time_s"], max(1, round(passes["forward_samples"] /
                                                                              max(passes["forward_calls"], 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--limit", type=int, default=16, help="images in the audit step")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="medaudit-bench-service-"))
    torch.manual_seed(0)
    model = work / "net.pt"
    torch.jit.script(XrayNet().eval()).save(str(model))
    server = V2Server(model, work).start()
    try:
        rng = np.random.default_rng(0)
        batches = [rng.random((args.batch, 1, 28, 28), dtype=np.float32) for _ in range(args.requests)]
        bare_loop(server.port, batches[:5])  # warm both sides up
        rows: dict[str, list[float]] = {"bare": [], "medaudit": [], f"medaudit K={args.concurrency}": []}
        for _ in range(args.rounds):
            rows["bare"].append(bare_loop(server.port, batches))
            rows["medaudit"].append(medaudit_loop(server.url, batches, 1))
            rows[f"medaudit K={args.concurrency}"].append(medaudit_loop(server.url, batches, args.concurrency))
        bare = statistics.median(rows["bare"])
        print(f"batches of {args.batch} images, {args.requests} requests, {args.rounds} interleaved rounds (medians)")
        for name, values in rows.items():
            print(f"  {name:16s} {statistics.median(values):9.1f} images/s   ratio to bare {statistics.median(values) / bare:.2f}")
        step = audit_step(server.url, work / "audit", args.limit)
        if step is None:
            print(f"  audit step: skipped ({NPZ} absent)")
        else:
            rate, size = step
            step_batches = [rng.random((size, 1, 28, 28), dtype=np.float32) for _ in range(args.requests)]
            bare_at_size = statistics.median(bare_loop(server.port, step_batches) for _ in range(args.rounds))
            print(f"  audit Square step {rate:9.1f} images/s (mean batch {size})   bare at that size "
                  f"{bare_at_size:.1f}   ratio {rate / bare_at_size:.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()

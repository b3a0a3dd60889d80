"""The speed benchmark (benchmarks/bench_attacks.py) still runs end to end: every peer, every
attack, on a tiny slice of the reference workload. Its numbers are not asserted (speed is
measured by the benchmark, never by tests); that each number exists, and that medaudit's
worst case is never above a peer's on the same images, is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_shared_data

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_benchmark_runs_every_peer_on_a_tiny_slice(tmp_path):
    require_shared_data("isic2017", "labels.csv")
    out = tmp_path / "bench.json"
    env = {**os.environ, "MEDAUDIT_BENCH_WIDTH": "8", "MEDAUDIT_BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_attacks.py"), "--n", "6", "--quick", "--eps", "8",
         "--n-independent", "2", "--n-art", "2", "--n-art-slow", "1", "--n-ta", "2", "--n-ta-slow", "1",
         "--threads", "1", "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    numbers = json.loads(out.read_text())
    # a peer that raised is logged and left out: say why, not only that it is missing
    assert {"a", "b", "c"} <= set(numbers["peers"]), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert numbers["ratios"]["c/a"] > 0 and numbers["ratios"]["c/b"] > 0
    for key, entry in numbers["worst_case"].items():
        if key != "a":  # (a) restricted to each peer's own images: never weaker than the peer
            for eps, value in entry["a_on_same_images"].items():
                assert value <= entry["robust_accuracy"][eps] + 1e-9, (key, eps)
    assert set(numbers["overhead"]["a"]) == {"fgsm", "pgd", "cw", "autoattack", "square", "zoo"}
    # None only where the cascade left an attack nothing to attack
    assert all(v["ratio"] is None and v["n_attacked"] == 0 or v["ratio"] > 0 for v in numbers["overhead"]["a"].values())
    assert numbers["overhead"]["a"]["fgsm"]["ratio"] > 0
    assert "time ratio c/a" in proc.stdout and "overhead ratio per attack" in proc.stdout

"""Same command, same seed, same machine: identical results.json apart from the fields that
hold timestamps, timings and the environment (``auditor.results.VOLATILE_KEYS``).

``tests/core/test_cli_run.py::test_same_seed_same_numbers`` covers PGD and Square; this
runs the whole default battery (FGSM, PGD, CW, AutoAttack, Square, ZOO) with the validity
checks and the targeted attacks, each run in its own process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from auditor.results import VOLATILE_KEYS, read_results, strip_volatile

REPO = Path(__file__).resolve().parents[2]


def comparable(results: dict) -> dict:
    return strip_volatile({k: v for k, v in results.items() if k != "command"})


@pytest.mark.slow
def test_default_battery_twice_gives_identical_results(demo_inputs, tmp_path):
    model, data = demo_inputs
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        done = subprocess.run(
            [sys.executable, "-m", "auditor.cli", "run", str(model), "--data", str(data), "--out", str(out),
             "--input-size", "32", "--budget", "quick", "--eps", "4", "--limit", "6", "--seed", "3",
             "--check-samples", "6", "--report-format", "none", "--quiet"],
            cwd=REPO, capture_output=True, text=True, timeout=1800,
        )
        assert done.returncode == 0, done.stderr
        runs.append(read_results(out))
    first, second = runs
    assert [a["attack"] for a in first["attacks"]] == ["fgsm", "pgd", "cw", "autoattack", "square", "zoo"]
    assert first["checks"] and first["clinical"] is not None
    assert comparable(first) == comparable(second)
    # timestamps, timings and the environment live in their own, declared fields
    assert {"created", "updated", "timing", "time_s", "environment"} <= VOLATILE_KEYS

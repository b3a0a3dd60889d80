"""What "the same numbers" means between two audits of the same model, data and seed:
results.json with everything that may differ between runs removed (wall times, pass
counts by batch size, the environment, the command line, dates, the batch size itself),
every count, index, label, prediction, query count and decision equal, and every float
equal up to float32 rounding. The last because a model's float32 kernels are not
batch-size invariant: the same image's logits differ in the 8th digit between a batch of 7
and one of 32 (the clean pass too, with no randomness at all), so a confidence or an L2
norm may differ there, while every decision taken from them is the same."""

from __future__ import annotations

import math
from typing import Any

REL_TOL = 1e-5  # float32 rounding, carried through softmax and norms

# Keys whose values legitimately differ between two runs of the same audit.
VOLATILE = {
    "time_s", "attack_time_s", "seconds", "timing", "overhead", "passes", "environment", "updated",
    "created", "started", "finished", "command", "batch_size", "config_hash", "provenance", "engine",
    "wall_s", "eta", "host", "memory",
}


def numbers(value: Any) -> Any:
    """``value`` without its volatile keys, recursively."""
    if isinstance(value, dict):
        return {k: numbers(v) for k, v in value.items() if k not in VOLATILE and not k.endswith("_time_s")}
    if isinstance(value, list):
        return [numbers(v) for v in value]
    return value


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two stripped results differ (empty: identical)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += differences(a.get(key), b.get(key), f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += differences(x, y, f"{path}[{i}]")
        return out
    if isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-9):
        return []
    return [] if a == b else [f"{path}: {str(a)[:80]} != {str(b)[:80]}"]

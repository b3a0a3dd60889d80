"""Make ``fixtures/results.json`` from a demo audit: ``python -m tests.reporters.trim_fixture
/tmp/demo/results.json``. Per-sample arrays are cut (reporters never read them) and one
gallery item is kept, so the fixture stays small but keeps the engine's shape."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.reporters.conftest import RESULTS

KEEP_SAMPLES = 3


def trim(results: dict[str, Any]) -> dict[str, Any]:
    results = dict(results)
    results.pop("samples", None)
    for entry in results.get("attacks", []):
        entry["samples"] = {k: v[:KEEP_SAMPLES] for k, v in entry.get("samples", {}).items()}
    results["gallery"] = results.get("gallery", [])[:1]
    checks = results.get("checks")
    if isinstance(checks, dict) and isinstance(checks.get("subsample"), dict):
        checks["subsample"]["indices"] = checks["subsample"].get("indices", [])[:KEEP_SAMPLES]
    return results


def main(source: str) -> None:
    data = trim(json.loads(Path(source).read_text(encoding="utf-8")))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS} ({RESULTS.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])

"""results.json's timing block says where the audit's wall time went (issue 20): one row
per attack x eps step, one per validity check, the clinical targeted attacks, and rows
that sum to the audit's wall time; the reports' rendering time is added after them."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from auditor.audit import run_audit
from auditor.cli.run import execute
from auditor.config import AuditConfig
from auditor.engine.record import breakdown_table
from tests.segmentation.conftest import make_registry, save_scripted, seg_config, ThresholdSeg, write_seg_folders

TOLERANCE_S = 0.05  # rounding of perf_counter differences, never a speed threshold


def _check_breakdown(results: dict[str, Any]) -> dict[str, Any]:
    timing = results["timing"]
    rows = timing["breakdown"]
    steps = Counter((r["attack"], float(r["eps_255"])) for r in rows if r["phase"] == "attack")
    assert steps == Counter((a["attack"], float(a["eps_255"])) for a in results["attacks"])
    assert len(steps) == len(results["config"]["attacks"]) * len(results["config"]["eps_255"])
    checks = [r["check"] for r in rows if r["phase"] == "check"]
    assert checks == [item["key"] for item in results["checks"]["items"]] and checks
    assert rows[0]["phase"] == "clean pass" and rows[0]["s"] > 0
    assert all(r["s"] >= 0 for r in rows)
    named = sum(r["s"] for r in rows if not r["phase"].startswith("other"))
    assert named <= timing["wall_s"] + TOLERANCE_S
    assert abs(sum(r["s"] for r in rows) - timing["wall_s"]) <= TOLERANCE_S
    assert abs(sum(r["share"] for r in rows) - 1) <= 0.01
    return timing


def test_classification_breakdown(demo_inputs, tmp_path):
    model, data = demo_inputs
    config = AuditConfig(model=model, data=data, out=tmp_path / "out", input_size=(32, 32), eps_255=[2, 8],
                         attacks=["fgsm", "pgd"], budget="quick", formats=["html"], device="cpu", check_samples=6)
    results = execute(config, quiet=True, as_json=False, command="test")  # the CLI's path: audit, then reports
    timing = _check_breakdown(results)
    assert "one_pass" in timing  # the keys the block had before stay
    assert [r for r in timing["breakdown"] if r["phase"] == "clinical targeted attacks"]
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["timing"]["breakdown"] == json.loads(json.dumps(timing["breakdown"]))
    table = breakdown_table(timing)
    assert timing["rendering"]["formats"] == ["html"] and timing["rendering"]["s"] > 0
    assert len(table) == len(timing["breakdown"]) + 3 and "pgd eps 8" in "\n".join(table)


def test_segmentation_breakdown(tmp_path):
    model = save_scripted(ThresholdSeg(), tmp_path / "model.pt")
    data = write_seg_folders(tmp_path / "data")
    config = seg_config(model, data, tmp_path / "out", attacks=["seg-fgsm-bce", "seg-pgd-dice"], check_samples=4)
    timing = _check_breakdown(run_audit(config, make_registry(), command="test"))
    assert "clean_pass_s" in timing

"""The whole-audit ETA plans the work after the last step too (checks, clinical targeted
attacks) for classification audits, so the overall bar does not reach 100% before them."""

from __future__ import annotations

from auditor.config import AuditConfig
from auditor.engine.classification import ClassificationAudit
from auditor.engine.prepare import prepare
from auditor.registry import get_registry


def _audit(demo_inputs, tmp_path, **overrides) -> ClassificationAudit:
    model, data = demo_inputs
    config = AuditConfig(model=model, data=data, out=tmp_path / "out", input_size=(32, 32), eps_255=[2, 8],
                         attacks=["fgsm", "pgd"], budget="quick", formats=[], device="cpu", **overrides)
    audit = ClassificationAudit(prepare(config, get_registry()))
    audit.before()  # resolves the positive class, as run() does before planning
    return audit


def test_finish_work_is_planned(demo_inputs, tmp_path):
    with_checks = _audit(demo_inputs, tmp_path, check_samples=16)
    without = _audit(demo_inputs, tmp_path, checks=False)
    steps = int(with_checks.prep.params["pgd"]["steps"])
    # targeted PGD in both clinical directions: every image, every eps, steps + the final look
    assert without.finish_units() == without.n * (steps + 1) * 2
    assert with_checks.finish_units() > without.finish_units() + 16 * steps * 2
    assert with_checks.planned_units() > with_checks.finish_units() > 0

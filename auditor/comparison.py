"""Two audits side by side: every comparable number, where B is worse than A beyond a
tolerance, validity checks that newly fail, and the measured evidence when B audits A's
model after ``medaudit harden``. The computation only; ``medaudit compare`` prints and
renders it (``report_templates/compare.html.jinja``)."""

from __future__ import annotations

from typing import Any

from auditor.errors import UsageError
from auditor.hardening.evidence import evidence_from_audits
from auditor.results import number_or_none

LOWER_IS_BETTER = {"missed_disease", "false_alarm", "lesion_missed"}


def _value(block: Any) -> tuple[float | None, list | None]:
    if isinstance(block, dict):
        return block.get("value"), block.get("ci95")
    return None, None


def _row(metric: str, label: str, eps: float | None, a: float | None, b: float | None, a_ci: Any, b_ci: Any,
         tolerance: float) -> dict[str, Any]:
    a, b = number_or_none(a), number_or_none(b)  # text in a results.json is a missing value, not a crash
    delta = None if a is None or b is None else b - a
    worse_sign = 1 if metric in LOWER_IS_BETTER else -1
    if delta is None:
        status = "missing"
    elif worse_sign * delta > tolerance + 1e-12:
        status = "worse"
    elif -worse_sign * delta > tolerance + 1e-12:
        status = "better"
    else:
        status = "same"
    return {"metric": metric, "label": label, "eps_255": eps, "a": a, "b": b, "delta": delta,
            "a_ci95": a_ci, "b_ci95": b_ci, "status": status, "regression": status == "worse"}


def _by_eps(rows: list[dict[str, Any]] | None) -> dict[float, dict[str, Any]]:
    return {float(r["eps_255"]): r for r in rows or []}


def task_of(results: dict[str, Any]) -> str:
    return (results.get("config") or {}).get("task") or (results.get("model") or {}).get("task") or "classification"


def _segmentation_rows(a: dict[str, Any], b: dict[str, Any], tolerance: float) -> list[dict[str, Any]]:
    rows = []
    ca, cb = a.get("clean") or {}, b.get("clean") or {}
    for metric in ("dice", "iou"):
        rows.append(_row(metric, f"{metric.replace('iou', 'IoU').replace('dice', 'Dice')} (clean)", None,
                         ca.get(metric), cb.get(metric), None, None, tolerance))
    wa, wb = _by_eps(a.get("worst_case")), _by_eps(b.get("worst_case"))
    for eps in sorted(set(wa) & set(wb)):
        rows.append(_row("worst_case", f"worst-case Dice @ {eps:g}/255", eps, wa[eps].get("dice"), wb[eps].get("dice"),
                         None, None, tolerance))
        rows.append(_row("lesion_missed", f"lesion missed by any attack @ {eps:g}/255", eps,
                         wa[eps].get("missed_rate_any"), wb[eps].get("missed_rate_any"), None, None, tolerance))
    aa = {(e["attack"], float(e["eps_255"])): e for e in a.get("attacks", [])}
    ab = {(e["attack"], float(e["eps_255"])): e for e in b.get("attacks", [])}
    for key in sorted(set(aa) & set(ab), key=lambda k: (k[1], k[0])):
        rows.append(_row("attack", f"{key[0]} Dice @ {key[1]:g}/255", key[1], aa[key].get("dice"), ab[key].get("dice"),
                         None, None, tolerance))
    return rows


def compare_results(a: dict[str, Any], b: dict[str, Any], tolerance: float = 0.02,
                    hardening_log: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every comparable number of two results dicts; ``regressions`` lists where B is worse.

    With ``hardening_log`` (the ``medaudit harden`` log of B's model), the comparison also
    states the measured evidence for that defense: A is the model before, B after."""
    if task_of(a) != task_of(b):
        raise UsageError(f"cannot compare a {task_of(a)} audit (A) with a {task_of(b)} audit (B)")
    if task_of(a) == "segmentation":
        return _finish(a, b, tolerance, _segmentation_rows(a, b, tolerance), hardening_log)
    rows = []
    ca, cb = a.get("clean") or {}, b.get("clean") or {}
    rows.append(_row("clean", "clean accuracy", None, ca.get("accuracy"), cb.get("accuracy"), ca.get("ci95"),
                     cb.get("ci95"), tolerance))
    wa, wb = _by_eps(a.get("worst_case")), _by_eps(b.get("worst_case"))
    for eps in sorted(set(wa) & set(wb)):
        rows.append(_row("worst_case", f"worst case @ {eps:g}/255", eps, wa[eps]["robust_accuracy"],
                         wb[eps]["robust_accuracy"], wa[eps].get("ci95"), wb[eps].get("ci95"), tolerance))
    aa = {(e["attack"], float(e["eps_255"])): e for e in a.get("attacks", [])}
    ab = {(e["attack"], float(e["eps_255"])): e for e in b.get("attacks", [])}
    for key in sorted(set(aa) & set(ab), key=lambda k: (k[1], k[0])):
        rows.append(_row("attack", f"{key[0]} @ {key[1]:g}/255", key[1], aa[key]["robust_accuracy"],
                         ab[key]["robust_accuracy"], aa[key].get("ci95"), ab[key].get("ci95"), tolerance))
    kl_a, kl_b = a.get("clinical") or {}, b.get("clinical") or {}
    same_positive = kl_a.get("positive_class") is not None and kl_a.get("positive_class") == kl_b.get("positive_class")
    if same_positive:
        for metric in ("sensitivity", "specificity", "auroc"):
            va, cia = _value((kl_a.get("clean") or {}).get(metric))
            vb, cib = _value((kl_b.get("clean") or {}).get(metric))
            if va is not None or vb is not None:
                rows.append(_row(metric, f"{metric} (clean)", None, va, vb, cia, cib, tolerance))
        ka, kb = _by_eps(kl_a.get("worst_case")), _by_eps(kl_b.get("worst_case"))
        for eps in sorted(set(ka) & set(kb)):
            for metric in ("sensitivity", "specificity", "auroc", "missed_disease", "false_alarm"):
                va, cia = _value(ka[eps].get(metric))
                vb, cib = _value(kb[eps].get(metric))
                if va is not None or vb is not None:
                    rows.append(_row(metric, f"{metric.replace('_', ' ')} @ {eps:g}/255", eps, va, vb, cia, cib,
                                     tolerance))
    return _finish(a, b, tolerance, rows, hardening_log)


def _finish(a: dict[str, Any], b: dict[str, Any], tolerance: float, rows: list[dict[str, Any]],
            hardening_log: dict[str, Any] | None) -> dict[str, Any]:
    checks = []
    items_a = {it["id"]: it for it in (a.get("checks") or {}).get("items", [])}
    items_b = {it["id"]: it for it in (b.get("checks") or {}).get("items", [])}
    for cid in sorted(set(items_a) | set(items_b)):
        sa = items_a.get(cid, {}).get("status")
        sb = items_b.get(cid, {}).get("status")
        name = (items_b.get(cid) or items_a.get(cid))["name"]
        checks.append({"id": cid, "name": name, "a": sa, "b": sb,
                       "regression": sb == "fail" and sa != "fail"})
    notes = []
    for label, get in (("data", lambda r: (r.get("data") or {}).get("sha256")),
                       ("eps grid", lambda r: (r.get("config") or {}).get("eps_255")),
                       ("mode", lambda r: (r.get("config") or {}).get("mode")),
                       ("budget", lambda r: (r.get("config") or {}).get("budget")),
                       ("attacks", lambda r: [x["name"] for x in (r.get("config") or {}).get("attacks", [])]),
                       ("positive class", lambda r: (r.get("clinical") or {}).get("positive_class"))):
        if get(a) != get(b):
            notes.append(f"{label} differs: A {get(a)!r}, B {get(b)!r}")
    for name, r in (("A", a), ("B", b)):
        if r.get("status") != "complete":
            notes.append(f"audit {name} is not complete (status {r.get('status')!r})")
    regressions = [r["label"] for r in rows if r["regression"]] + [
        f"check {c['id']} {c['name']} now fails" for c in checks if c["regression"]]
    return {
        "a": {"model": (a.get("model") or {}).get("name"), "sha256": (a.get("model") or {}).get("sha256"),
              "created": a.get("created"), "gates": (a.get("gates") or {}).get("verdict")},
        "b": {"model": (b.get("model") or {}).get("name"), "sha256": (b.get("model") or {}).get("sha256"),
              "created": b.get("created"), "gates": (b.get("gates") or {}).get("verdict")},
        "task": task_of(a), "tolerance": tolerance, "rows": rows, "checks": checks, "notes": notes,
        "regressions": regressions, "verdict": "worse" if regressions else "not worse",
        "hardening": evidence_from_audits(a, b, hardening_log) if hardening_log is not None else None,
    }

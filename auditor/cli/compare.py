"""``medaudit compare``: what changed between two audits (model v1 vs v2, before and after
hardening), and whether the second is worse beyond a tolerance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from auditor.cli.common import handle_errors
from auditor.errors import EXIT_GATE_FAILED, UsageError
from auditor.results import number_or_none, read_results, write_atomic

COMPARE_HELP = """Compare two audits (results.json files or their folders) and print the differences.

Compares clean accuracy, worst-case robust accuracy per eps, each attack per eps, clinical
metrics and validity checks. Exit code 1 when B is worse than A by more than --tolerance
on any of them (or a validity check newly fails), 0 otherwise, 3 when a file is unreadable.

Examples:

  medaudit compare v1-report/ v2-report/

  medaudit compare before/results.json after/results.json --tolerance 0.01 --out compare/
"""

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
    from auditor.harden import evidence_from_audits

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


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _fmt_delta(v: Any) -> str:
    return "-" if v is None else f"{v:+.3f}"


HTML_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medaudit comparison</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:60rem;color:#1d2733}
h1{font-size:1.4rem}table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{padding:.3rem .6rem;border-bottom:1px solid #dde3ea;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#f3f6f9}.worse{color:#b3261e;font-weight:600}.better{color:#1b7a3a}.same{color:#5b6773}
.verdict{display:inline-block;padding:.2rem .7rem;border-radius:1rem;font-weight:600}
.v-worse{background:#fde8e6;color:#b3261e}.v-not{background:#e6f4ea;color:#1b7a3a}.notes{color:#8a5a00}
</style></head><body>
<h1>medaudit comparison</h1>
<p>A: <b>{{ c.a.model }}</b> ({{ c.a.created }}) &nbsp; B: <b>{{ c.b.model }}</b> ({{ c.b.created }})</p>
<p><span class="verdict {{ 'v-worse' if c.regressions else 'v-not' }}">B is {{ c.verdict }}</span>
 than A (tolerance {{ '%.3f' % c.tolerance }})</p>
{% if c.hardening %}<h2>Measured defense evidence</h2><p class="evidence">{{ c.hardening.message }}.</p>
<p>A is the model before {{ c.hardening.title }}, B after it; both audited on the same data and attacks.</p>{% endif %}
{% if c.notes %}<ul class="notes">{% for n in c.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
<table><thead><tr><th>metric</th><th>A</th><th>B</th><th>B - A</th><th></th></tr></thead><tbody>
{% for r in c.rows %}<tr><td>{{ r.label }}</td><td>{{ fmt(r.a) }}</td><td>{{ fmt(r.b) }}</td>
<td class="{{ r.status }}">{{ fmt_delta(r.delta) }}</td><td class="{{ r.status }}">{{ r.status }}</td></tr>
{% endfor %}</tbody></table>
{% if c.checks %}<h2>Validity checks</h2><table><thead><tr><th>check</th><th>A</th><th>B</th></tr></thead><tbody>
{% for k in c.checks %}<tr><td>{{ k.id }}. {{ k.name }}</td><td>{{ k.a or '-' }}</td>
<td class="{{ 'worse' if k.regression else '' }}">{{ k.b or '-' }}</td></tr>{% endfor %}</tbody></table>{% endif %}
</body></html>
"""


def render_html(comparison: dict[str, Any]) -> str:
    from jinja2 import Environment

    env = Environment(autoescape=True)
    return env.from_string(HTML_TEMPLATE).render(c=comparison, fmt=_fmt, fmt_delta=_fmt_delta)


def print_table(comparison: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title=f"A: {comparison['a']['model']}  vs  B: {comparison['b']['model']}")
    for col in ("metric", "A", "B", "B - A", ""):
        table.add_column(col, justify="left" if col in ("metric", "") else "right")
    styles = {"worse": "bold red", "better": "green", "same": "dim", "missing": "yellow"}
    for r in comparison["rows"]:
        table.add_row(r["label"], _fmt(r["a"]), _fmt(r["b"]), _fmt_delta(r["delta"]), r["status"],
                      style=styles.get(r["status"]) if r["status"] == "worse" else None)
    console.print(table)
    changed = [c for c in comparison["checks"] if c["a"] != c["b"]]
    for c in changed:
        console.print(f"check {c['id']} {c['name']}: {c['a']} -> {c['b']}", markup=False)
    for note in comparison["notes"]:
        console.print(f"note: {note}", markup=False)
    if comparison.get("hardening"):
        console.print(f"measured defense evidence: {comparison['hardening']['message']}", markup=False, soft_wrap=True)
    verdict = comparison["verdict"]
    console.print(f"B is {verdict} than A (tolerance {comparison['tolerance']:g})"
                  + (f": {', '.join(comparison['regressions'])}" if comparison["regressions"] else ""), markup=False)


def _hardening_log(b: dict[str, Any], explicit: Path | None) -> dict[str, Any] | None:
    from auditor.harden import log_path_for

    if explicit is None:
        model_path = (b.get("model") or {}).get("path")
        if not model_path:
            return None
        explicit = log_path_for(Path(model_path))
        if not explicit.is_file():
            return None
    try:
        log = json.loads(explicit.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--hardening-log: cannot read {explicit}: {exc}") from None
    if not isinstance(log, dict) or "method" not in log or "settings" not in log:
        raise UsageError(f"--hardening-log: {explicit} is not a `medaudit harden` log")
    return log


@handle_errors
def compare(
    a: Annotated[Path, typer.Argument(help="Baseline audit: results.json or its folder.")],
    b: Annotated[Path, typer.Argument(help="Audit to check against the baseline.")],
    tolerance: Annotated[float, typer.Option(help="How much worse (absolute, e.g. 0.02 = 2 points) B may be before it counts.")] = 0.02,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for compare.html and compare.json.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON on stdout.")] = False,
    hardening_log: Annotated[Optional[Path], typer.Option(
        "--hardening-log",
        help="The `medaudit harden` log of B's model (B = A hardened). Default: the log next to B's model file, "
             "if there is one. Adds the measured before/after evidence for that defense.")] = None,
) -> None:
    if not 0 <= tolerance < 1:
        raise UsageError(f"--tolerance: {tolerance:g} must be between 0 and 1 (an absolute difference)")
    ra, rb = read_results(a), read_results(b)
    log = _hardening_log(rb, hardening_log)
    source = ((log or {}).get("model_in") or {}).get("sha256")
    mismatch = log is not None and source and source != (ra.get("model") or {}).get("sha256")
    comparison = compare_results(ra, rb, tolerance, None if mismatch else log)
    if mismatch:  # the log hardened some other model: A is not "before"
        comparison["notes"].append("hardening evidence left out: the harden log's input model is not A's model "
                                   f"(sha256 {source[:12]}... vs {str((ra.get('model') or {}).get('sha256'))[:12]}...)")
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out: cannot create {out}: {exc.strerror or exc}") from None
        write_atomic(out / "compare.html", render_html(comparison))
        write_atomic(out / "compare.json", json.dumps(comparison, indent=1))
    if as_json:
        typer.echo(json.dumps(comparison, indent=1))
    else:
        print_table(comparison)
    if comparison["regressions"]:
        raise typer.Exit(EXIT_GATE_FAILED)

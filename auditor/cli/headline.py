"""The headline of a finished audit on the terminal: what a reader of the report's cover and
summary would take away, printed on stderr at the end of ``medaudit run`` (stdout stays
for ``--json``). It reads ``results`` only: every number comes from the engine.

Classification: clean accuracy and the worst case per eps, each with its 95% interval,
the clinical line (how many images of the clinically important class are misreported),
the validity checks' verdict and the acceptance gates' verdict. Segmentation: the same
with Dice, and the share of structures missed.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from auditor.cli.common import printable


def _pct(value: Any, digits: int = 1) -> str:
    return f"{value:.{digits}%}" if isinstance(value, (int, float)) else "n/a"


def _dice(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"


def _eps(value: Any) -> str:
    return f"{value:g}/255" if isinstance(value, (int, float)) else "?"


def _interval(ci: Any, fmt: Any) -> str:
    return f"{fmt(ci[0])} to {fmt(ci[1])}" if isinstance(ci, list) and len(ci) == 2 else ""


def _line(text: str) -> Text:
    """Names from results (classes, criteria) as plain text: no markup, no terminal controls."""
    return Text(printable(text))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _table(rows: list[tuple[str, str, str, str]], metric: str) -> Table:
    table = Table(title="medaudit: headline", title_justify="left", show_edge=False)
    for name, justify in (("", "left"), (metric, "right"), ("95% CI", "right"), ("images", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*row)
    return table


def _classification(results: dict[str, Any]) -> list[Any]:
    clean = _dict(results.get("clean"))
    rows = [("clean", _pct(clean.get("accuracy")), _interval(clean.get("ci95"), _pct), str(clean.get("n", "")))]
    for w in _list(results.get("worst_case")):
        rows.append((f"worst case at {_eps(w.get('eps_255'))}", _pct(w.get("robust_accuracy")),
                     _interval(w.get("ci95"), _pct), str(w.get("n", ""))))
    lines: list[Any] = [_table(rows, "accuracy")]
    impact = _list(_dict(results.get("summary")).get("class_impact"))
    two_classes = len(_dict(results.get("model")).get("class_names") or []) == 2
    for entry in impact[:1] + impact[1:][-1:]:  # the smallest and the largest budget, as the report's summary
        flipped = entry.get("flipped_to")
        outcome = f"reported as {flipped}" if two_classes and flipped else "misclassified"
        lines.append(_line(f"clinical: at {_eps(entry.get('eps_255'))}, {_pct(entry.get('misreported_fraction'), 0)} "
                           f"of {entry.get('class')} images are {outcome}"))
    clinical = _dict(results.get("clinical"))
    if clinical and clinical.get("positive_index") is None and clinical.get("note"):
        lines.append(_line(f"clinical: not computed ({clinical['note']})"))
    return lines


def _segmentation(results: dict[str, Any]) -> list[Any]:
    clean = _dict(results.get("clean"))
    rows = [("clean", _dice(clean.get("dice")), _interval(clean.get("dice_ci95"), _dice), str(clean.get("n", "")))]
    worst = _list(results.get("worst_case"))
    for w in worst:
        rows.append((f"worst case at {_eps(w.get('eps_255'))}", _dice(w.get("dice")),
                     _interval(w.get("dice_ci95"), _dice), str(w.get("n", ""))))
    lines: list[Any] = [_table(rows, "Dice")]
    structure = _dict(results.get("modality")).get("structure") or "lesion"
    if worst and isinstance(worst[-1].get("missed_rate"), (int, float)):
        lines.append(_line(f"clinical: at {_eps(worst[-1].get('eps_255'))}, {_pct(worst[-1]['missed_rate'], 0)} of "
                          f"{structure} regions are missed (clean: {_pct(clean.get('missed_rate'), 0)})"))
    return lines


def _verdicts(results: dict[str, Any]) -> list[Any]:
    checks = _dict(results.get("checks"))
    verdict = checks.get("verdict")
    if not verdict:
        checks_line = "validity checks: not run"
    elif verdict == "skipped":
        checks_line = f"validity checks: skipped: {checks.get('reason') or 'turned off'}"
    else:
        counts = ", ".join(f"{n} {status}" for status, n in _dict(checks.get("summary")).items() if n)
        checks_line = f"validity checks: {str(verdict).upper()}" + (f" ({counts})" if counts else "")
    gates = _dict(results.get("gates"))
    if gates.get("verdict"):
        failed = [str(c.get("label") or c.get("criterion")) for c in _list(gates.get("criteria")) if not c.get("passed")]
        gate_line = f"acceptance gates: {str(gates['verdict']).upper()}" + (f" (failed: {', '.join(failed)})" if failed else "")
    else:
        gate_line = "acceptance gates: not assessed (no --fail-under)"
    return [_line(checks_line), _line(gate_line)]


def headline(results: dict[str, Any]) -> Group:
    """The headline as one Rich renderable (strings from results are plain Text, never markup)."""
    task = _dict(results.get("model")).get("task") or "classification"
    body = _segmentation(results) if task == "segmentation" else _classification(results)
    stopped = _dict(results.get("incomplete"))
    if results.get("status") == "incomplete":  # never a headline that reads as a whole audit
        not_run = [str(s) for s in stopped.get("not_run") or []] if isinstance(stopped.get("not_run"), list) else []
        body.insert(0, _line(f"INCOMPLETE AUDIT: {stopped.get('reason') or 'stopped early'}; did not run: "
                             f"{', '.join(not_run) or 'unknown'}"))
    return Group(*body, *_verdicts(results))


def print_headline(results: dict[str, Any], console: Console) -> None:
    console.print(headline(results), highlight=False)

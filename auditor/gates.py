"""Acceptance gates: ``--fail-under`` criteria, their verdict, and JUnit XML for CI.

A criterion is ``METRIC[@EPS]OP THRESHOLD``; ``=`` means "at least" for metrics where
higher is better and "at most" for rates where lower is better (``>=`` / ``<=`` say it
explicitly). EPS is in /255 units and must be one the audit runs; THRESHOLD is a
fraction (0.5) or a percentage (50%).

=========================  ==========================================================
``clean=0.80``             clean accuracy
``worst_case@4=0.50``      worst-case robust accuracy at eps 4/255
``pgd@2=0.60``             an attack's robust accuracy (cumulative in cascade mode)
``sensitivity@2=0.80``     sensitivity under attack (without @eps: clean); also
                           ``specificity``, ``auroc`` (two-class models)
``missed_disease@4<=0.2``  true positives flipped to negative (lower is better); also
                           ``false_alarm``
``targeted_pos_to_neg@4=0.3``  targeted PGD success positive -> negative (lower is
                           better); also ``targeted_neg_to_pos``
``checks=no-fail``         no validity check fails (``no-warn``: none fails or warns)
``corruption@3=0.8``       accuracy at corruption severity 3, worst case per image over
                           the audited families (``--corruptions``); also
                           ``corruption:defocus-blur@3=0.8`` for one family
``worst_case@4=0.5:lower`` the lower end of the 95% interval must reach 0.5 (``:upper``
                           for lower-is-better rates: the upper end must stay below)
=========================  ==========================================================

Gating on a bound asks the sample to prove the claim, not just to point at it: the
intervals are those results.json records beside each number (Wilson score intervals for
accuracies and rates, DeLong for AUROC). A gate on the point estimate whose interval
straddles the threshold is undecided by its sample: the gate says so and gives the n at
which the Wilson interval at the observed value would exclude the threshold
(:func:`auditor.stats.wilson_n_to_exclude`: the smallest n > z^2 t(1-t) / (p-t)^2).
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from auditor.errors import InputError, UsageError
from auditor.results import write_atomic
from auditor.stats import wilson_n_to_exclude

HIGHER_IS_BETTER = {"clean", "worst_case", "sensitivity", "specificity", "auroc"}
LOWER_IS_BETTER = {"missed_disease", "false_alarm", "targeted_pos_to_neg", "targeted_neg_to_pos"}
CLINICAL = {"sensitivity", "specificity", "auroc", "missed_disease", "false_alarm",
            "targeted_pos_to_neg", "targeted_neg_to_pos"}
NEEDS_EPS = {"worst_case", "missed_disease", "false_alarm", "targeted_pos_to_neg", "targeted_neg_to_pos"}
ALIASES = {"worst-case": "worst_case", "worst": "worst_case", "missed-disease": "missed_disease",
           "false-alarm": "false_alarm", "targeted-pos-to-neg": "targeted_pos_to_neg",
           "targeted-neg-to-pos": "targeted_neg_to_pos", "accuracy": "clean"}
CHECK_LEVELS = ("no-fail", "no-warn")
BOUNDS = ("point", "lower", "upper")  # what a threshold is compared with
_PATTERN = re.compile(
    r"^(?P<metric>[A-Za-z][A-Za-z0-9_\-]*(?::[A-Za-z0-9_\-]+)?)(?:@(?P<eps>[^=<>]+?))?\s*(?P<op>>=|<=|=)\s*(?P<value>.+)$")
DESCRIPTIONS = {
    "clean": "clean accuracy", "worst_case": "worst-case robust accuracy", "sensitivity": "sensitivity",
    "specificity": "specificity", "auroc": "AUROC", "missed_disease": "missed-disease rate",
    "false_alarm": "false-alarm rate", "targeted_pos_to_neg": "targeted success positive -> negative",
    "targeted_neg_to_pos": "targeted success negative -> positive",
}


@dataclass(frozen=True)
class Criterion:
    text: str  # as the user wrote it
    metric: str  # canonical metric name, or an attack name
    eps_255: float | None
    op: str  # ">=" | "<=" | "checks"
    threshold: float | str  # a fraction, or "no-fail" / "no-warn" for checks
    bound: str = "point"  # "lower" / "upper": the end of the 95% interval that must clear the threshold

    @property
    def label(self) -> str:
        at = f"@{self.eps_255:g}" if self.eps_255 is not None else ""
        if self.metric == "checks":
            return f"checks={self.threshold}"
        suffix = f":{self.bound}" if self.bound != "point" else ""
        return f"{self.metric}{at}{self.op}{self.threshold:g}{suffix}"


def _fraction(text: str, raw: str) -> float:
    text = text.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise UsageError(f"--fail-under: '{raw}': threshold '{text}' is not a number (e.g. 0.5 or 50%)") from None
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise UsageError(f"--fail-under: '{raw}': threshold {text} is outside 0..1 (write 0.5 or 50%)")
    return value


def parse_criterion(raw: str) -> Criterion:
    text = raw.strip()
    match = _PATTERN.match(text)
    if not match:
        raise UsageError(
            f"--fail-under: cannot parse '{raw}' (expected METRIC[@EPS]=THRESHOLD, e.g. worst_case@4=0.50)")
    metric = match["metric"].lower()
    metric = ALIASES.get(metric, metric)
    op, value = match["op"], match["value"].strip()
    if metric == "checks":
        if match["eps"] is not None or op != "=" or value.lower() not in CHECK_LEVELS:
            raise UsageError(f"--fail-under: '{raw}': write checks=no-fail or checks=no-warn")
        return Criterion(text, "checks", None, "checks", value.lower())
    eps = None
    if match["eps"] is not None:
        eps_text = match["eps"].strip().removesuffix("/255")
        try:
            eps = float(eps_text)
        except ValueError:
            raise UsageError(f"--fail-under: '{raw}': eps '{match['eps']}' is not a number of /255 units") from None
        if not math.isfinite(eps) or eps <= 0:
            raise UsageError(f"--fail-under: '{raw}': eps must be a positive number of /255 units")
    if is_corruption(metric) and (eps is None or eps not in (1, 2, 3, 4, 5)):
        raise UsageError(f"--fail-under: '{raw}': a corruption gate needs a severity from 1 to 5, e.g. "
                         f"corruption@3=0.8 or corruption:defocus-blur@3=0.8")
    if metric == "clean" and eps is not None:
        raise UsageError(f"--fail-under: '{raw}': clean accuracy has no eps (write clean=0.8)")
    if metric in NEEDS_EPS and eps is None:
        raise UsageError(f"--fail-under: '{raw}': {metric} needs an eps, e.g. {metric}@4=...")
    bound = "point"
    if ":" in value:
        value, bound = (part.strip() for part in value.rsplit(":", 1))
        bound = bound.lower()
        if bound not in ("lower", "upper"):
            raise UsageError(f"--fail-under: '{raw}': ':{bound}' is not a bound (write :lower or :upper)")
    threshold = _fraction(value, raw)
    if op == "=":
        op = "<=" if metric in LOWER_IS_BETTER else ">="
    # Only the pessimistic end makes the sample prove the claim; the other end would pass
    # a gate the point estimate fails.
    if bound != "point" and bound != ("lower" if op == ">=" else "upper"):
        need = "lower" if op == ">=" else "upper"
        raise UsageError(f"--fail-under: '{raw}': a {'minimum' if op == '>=' else 'maximum'} is gated on the "
                         f"{need} bound (:{need}), the end of the interval that must clear it")
    if metric not in HIGHER_IS_BETTER | LOWER_IS_BETTER and eps is None:  # an attack name
        raise UsageError(f"--fail-under: '{raw}': an attack's robust accuracy needs an eps, e.g. {metric}@4=...")
    return Criterion(text, metric, eps, op, threshold, bound)


def parse_criteria(items: Iterable[str]) -> list[Criterion]:
    """Criteria from repeated and/or comma-separated ``--fail-under`` values."""
    out = []
    for item in items:
        for part in str(item).split(","):
            if part.strip():
                out.append(parse_criterion(part))
    return out


def load_criteria_file(path: Path) -> list[str]:
    """Criteria from a TOML or JSON file: a list of strings, or a table / object
    ``{"worst_case@4": 0.5, "checks": "no-fail"}``, at the top level (JSON) or under
    ``fail_under`` (both)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--fail-under-file: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    data: Any = None
    errors = []
    loaders = ("toml", "json") if path.suffix.lower() == ".toml" else ("json", "toml")
    for kind in loaders:
        try:
            if kind == "json":
                data = json.loads(text)
            else:
                import tomllib

                data = tomllib.loads(text)
            break
        except (ValueError, json.JSONDecodeError) as exc:
            errors.append(f"{kind}: {str(exc).splitlines()[0]}")
    else:
        raise UsageError(f"--fail-under-file: {path} is neither TOML nor JSON ({'; '.join(errors)})")
    if isinstance(data, dict):
        for key in ("fail_under", "fail-under", "gates"):
            if key in data:
                data = data[key]
                break
    items: list[str] = []
    if isinstance(data, list) and all(isinstance(v, str) for v in data):
        items = list(data)
    elif isinstance(data, dict) and all(isinstance(v, (int, float, str)) and not isinstance(v, bool)
                                        for v in data.values()):
        items = [f"{key}={value}" for key, value in data.items()]
    else:
        raise UsageError(f"--fail-under-file: {path} must hold a list of criteria or a table of metric = threshold "
                         "(under 'fail_under')")
    return items


# ---------------------------------------------------------------- validation
def validate_criteria(criteria: list[Criterion], *, eps_255: list[float], attacks: list[str],
                      positive: str | None, binary: bool) -> None:
    """Reject criteria the audit cannot answer, before any attack runs."""
    for c in criteria:
        if c.metric == "checks" or is_corruption(c.metric):  # corruption: auditor.engine.corruption checks it
            continue
        if c.eps_255 is not None and not any(abs(c.eps_255 - e) < 1e-9 for e in eps_255):
            raise UsageError(f"--fail-under: '{c.text}': eps {c.eps_255:g}/255 is not audited "
                             f"(audited: {', '.join(f'{e:g}' for e in eps_255)})")
        if c.metric in CLINICAL and positive is None:
            raise UsageError(f"--fail-under: '{c.text}' needs a positive class; pass --positive-class NAME")
        if c.metric == "auroc" and not binary:
            raise UsageError(f"--fail-under: '{c.text}': AUROC is computed for two-class models only")
        if c.metric not in HIGHER_IS_BETTER | LOWER_IS_BETTER and c.metric not in attacks:
            raise UsageError(f"--fail-under: '{c.text}': '{c.metric}' is not a metric or an attack in this audit "
                             f"(metrics: {', '.join(sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER | {'checks'}))}; "
                             f"attacks: {', '.join(attacks)})")


# ---------------------------------------------------------------- evaluation
def _at(rows: list[dict[str, Any]] | None, eps: float | None) -> dict[str, Any] | None:
    return next((r for r in rows or [] if eps is not None and abs(r["eps_255"] - eps) < 1e-9), None)


def _lookup(c: Criterion, results: dict[str, Any]) -> tuple[float | None, list | None, str, int | None, str]:
    """(value, ci95, description, n, interval method) of a criterion's metric in ``results``."""
    what = DESCRIPTIONS.get(c.metric, f"{c.metric} robust accuracy")
    where = f" at eps {c.eps_255:g}/255" if c.eps_255 is not None else ""
    n_all = (results.get("clean") or {}).get("n")
    if c.metric == "clean":
        clean = results.get("clean") or {}
        return clean.get("accuracy"), clean.get("ci95"), what, n_all, "wilson"
    if c.metric == "worst_case":
        row = _at(results.get("worst_case"), c.eps_255) or {}
        return row.get("robust_accuracy"), row.get("ci95"), what + where, row.get("n", n_all), "wilson"
    if c.metric in ("targeted_pos_to_neg", "targeted_neg_to_pos"):
        key = "positive_to_negative" if c.metric == "targeted_pos_to_neg" else "negative_to_positive"
        row = _at((results.get("targeted") or {}).get("per_eps"), c.eps_255)
        block = (row or {}).get(key) or {}
        return block.get("value"), block.get("ci95"), what + where, block.get("n"), "wilson"
    if c.metric in CLINICAL:
        clinical = results.get("clinical") or {}
        row = clinical.get("clean") if c.eps_255 is None else _at(clinical.get("worst_case"), c.eps_255)
        block = (row or {}).get(c.metric) or {}
        n = block.get("n") if c.metric != "auroc" else None  # DeLong: no proportion, no n to solve for
        return (block.get("value"), block.get("ci95"), what + (where + " (worst case)" if where else " (clean)"),
                n, block.get("ci_method") or "wilson")
    if is_corruption(c.metric):
        return _corruption_lookup(c, results)
    entry = next((a for a in results.get("attacks", []) if a["attack"] == c.metric
                  and abs(a["eps_255"] - (c.eps_255 or -1)) < 1e-9), None) or {}
    mode = (results.get("config") or {}).get("mode")
    note = " (cumulative: cascade mode)" if mode == "cascade" else ""
    return entry.get("robust_accuracy"), entry.get("ci95"), what + where + note, n_all, "wilson"


def is_corruption(metric: str) -> bool:
    """``corruption`` (worst case over the audited families) or ``corruption:FAMILY``."""
    return metric == "corruption" or metric.startswith("corruption:")


def _corruption_lookup(c: Criterion, results: dict[str, Any]) -> tuple[float | None, list | None, str, int | None, str]:
    """A corruption gate's accuracy at its severity (``Criterion.eps_255`` holds the severity)."""
    block = results.get("corruption") or {}
    severity = int(c.eps_255 or 0)
    if c.metric == "corruption":
        row = next((w for w in block.get("worst_case") or [] if w["severity"] == severity), None) or {}
        what = f"accuracy under corruption at severity {severity} (worst case over families)"
    else:
        family = c.metric.split(":", 1)[1]
        row = next((e for e in block.get("steps") or [] if e["family"] == family and e["severity"] == severity),
                   None) or {}
        what = f"accuracy under {family} at severity {severity}"
    return row.get("accuracy"), row.get("ci95"), what, row.get("n"), "wilson"


def _undecided(value: float, ci: Any, threshold: float, n: int | None, method: str) -> dict[str, Any] | None:
    """When the 95% interval straddles the threshold, the sample cannot tell the two sides
    apart: how many images would, at the observed value (Wilson intervals only)."""
    low, high = (list(ci) + [None, None])[:2] if isinstance(ci, (list, tuple)) else (None, None)
    if low is None or high is None or not low < threshold < high:
        return None
    needed = wilson_n_to_exclude(value, threshold) if method == "wilson" and n else None
    return {"n": n, "n_needed": needed}


def _bound_phrase(c: Criterion, ci: Any, method: str) -> tuple[float | None, str]:
    """The number compared with the threshold and how the message names it."""
    if c.bound == "point":
        return None, ""
    low, high = (list(ci) + [None, None])[:2] if isinstance(ci, (list, tuple)) else (None, None)
    bound = low if c.bound == "lower" else high
    name = "Wilson" if method == "wilson" else "DeLong" if method == "delong" else method
    return bound, f"the {c.bound} end of its 95% {name} interval"


def evaluate_criterion(c: Criterion, results: dict[str, Any]) -> dict[str, Any]:
    if c.metric == "checks":
        checks = results.get("checks") or {}
        summary = checks.get("summary") or {}
        bad = [it for it in checks.get("items", [])
               if it["status"] == "fail" or (c.threshold == "no-warn" and it["status"] == "warn")]
        ran = bool(checks.get("items"))
        passed = ran and not bad
        if not ran:
            message = "validity checks did not run"
        elif bad:
            message = "validity checks " + ", ".join(f"{it['id']} {it['key']} ({it['status']})" for it in bad)
        else:
            message = f"validity checks: {summary.get('fail', 0)} fail, {summary.get('warn', 0)} warn"
        return {"criterion": c.text, "label": c.label, "metric": "checks", "eps_255": None, "op": c.threshold,
                "threshold": c.threshold, "value": {k: summary.get(k, 0) for k in ("pass", "warn", "fail", "skipped")},
                "ci95": None, "passed": passed, "message": message}
    value, ci, what, n, method = _lookup(c, results)
    bound_value, bound_name = _bound_phrase(c, ci, method)
    compared = value if c.bound == "point" else bound_value
    undecided = None
    if value is None:
        passed = False
        message = f"{what} is not available in this audit"
    elif compared is None:
        passed = False
        message = f"{what} is {value:.3f} but has no 95% interval to gate on"
    else:
        passed = compared >= c.threshold if c.op == ">=" else compared <= c.threshold
        relation = ("at least" if c.op == ">=" else "at most") if passed else ("below" if c.op == ">=" else "above")
        if c.bound == "point":
            message = f"{what} is {value:.3f}, {relation} {c.threshold:.3f}"
        else:
            message = f"{what} is {value:.3f}; {bound_name} is {compared:.3f}, {relation} {c.threshold:.3f}"
        undecided = _undecided(value, ci, c.threshold, n, method)
        if undecided is not None:
            message += f"; the sample cannot decide (95% interval {ci[0]:.3f}-{ci[1]:.3f} contains {c.threshold:.3f})"
            if undecided["n_needed"] is not None:
                message += (f": at the observed {value:.3f}, {undecided['n_needed']:,} images would (Wilson, "
                            f"{n:,} audited)")
    return {"criterion": c.text, "label": c.label, "metric": c.metric, "eps_255": c.eps_255, "op": c.op,
            "threshold": c.threshold, "value": value, "ci95": ci, "bound": c.bound, "ci_method": method,
            "compared": compared, "n": n, "undecided": undecided, "passed": bool(passed), "message": message}


def evaluate_gates(criteria: list[Criterion], results: dict[str, Any]) -> dict[str, Any] | None:
    """``results["gates"]``: the verdict and each criterion; None when no criteria were given."""
    if not criteria:
        return None
    rows = [evaluate_criterion(c, results) for c in criteria]
    return {"verdict": "pass" if all(r["passed"] for r in rows) else "fail", "criteria": rows,
            "n_failed": sum(1 for r in rows if not r["passed"])}


# -------------------------------------------------------------------- JUnit
def junit_xml(gates: dict[str, Any], suite: str = "medaudit.gates", model: str | None = None) -> str:
    """One ``<testcase>`` per criterion, ``<failure>`` for those that failed."""
    rows = gates.get("criteria", [])
    failures = sum(1 for r in rows if not r["passed"])
    root = ET.Element("testsuites", name="medaudit", tests=str(len(rows)), failures=str(failures), errors="0")
    suite_el = ET.SubElement(root, "testsuite", name=suite, tests=str(len(rows)), failures=str(failures),
                             errors="0", skipped="0")
    if model:
        props = ET.SubElement(suite_el, "properties")
        ET.SubElement(props, "property", name="model", value=model)
        ET.SubElement(props, "property", name="verdict", value=str(gates.get("verdict")))
    for r in rows:
        case = ET.SubElement(suite_el, "testcase", classname=suite, name=r["label"], time="0")
        if not r["passed"]:
            failure = ET.SubElement(case, "failure", message=r["message"], type="AcceptanceGateFailed")
            failure.text = f"{r['criterion']}: {r['message']}"
        out = ET.SubElement(case, "system-out")
        out.text = r["message"]
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(gates: dict[str, Any], path: Path, model: str | None = None) -> Path:
    path = Path(path)
    if not path.parent.exists():
        raise InputError(f"--junit: folder {path.parent} does not exist")
    write_atomic(path, junit_xml(gates, model=model))
    return path

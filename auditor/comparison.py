"""Two audits side by side: every comparable number, whether B is significantly worse than
A, validity checks that newly fail, and the measured evidence when B audits A's model after
``medaudit harden``. The computation only; ``medaudit compare`` prints and renders it
(``report_templates/compare.html.jinja``).

Both audits normally hold the same images (same data fingerprint, same sample ids), so each
number is compared image by image, from the per-image results in results.json:

* proportions (clean and worst-case accuracy, an attack's robust accuracy, sensitivity,
  specificity, lesions missed): McNemar's exact test on the discordant images, and
  Newcombe's hybrid score interval for the paired difference;
* AUROC, missed-disease and false-alarm rates, Dice and IoU: a paired bootstrap over images
  (2,000 resamples, seed 0), percentile interval, p-value from the resampled differences.

A row is a **regression** when B is worse by more than the margin (default 0) **and** the
test says so at alpha = 0.05: the margin ignores changes too small to matter, the test
ignores changes the sample cannot tell from chance. Audits of different images are refused
unless the caller allows it; they are then compared unpaired (two-proportion z-test,
unpaired bootstrap), labelled so. A row without per-image data (results.json from an older
medaudit) falls back to its point estimates: worse by more than the margin, marked untested.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from auditor.errors import UsageError
from auditor.hardening.evidence import evidence_from_audits
from auditor.results import number_or_none
from auditor.stats import (auroc, bootstrap_difference, mcnemar_exact, paired_difference_ci,
                           unpaired_proportion_test)

LOWER_IS_BETTER = {"missed_disease", "false_alarm", "lesion_missed"}
ALPHA = 0.05
RESAMPLES = 2000
SEED = 0
Measure = tuple  # ("proportion", outcome) | ("mean", values) | ("auroc", scores, positive) | ("rate", hit, denominator)


# ------------------------------------------------------------------ pairing
def _samples(results: dict[str, Any]) -> dict[str, Any]:
    """The per-image block (classification: results.samples; segmentation: clean.samples);
    {} when absent or not a mapping (a results.json is data, not code we trust)."""
    holder = results.get("clean") if task_of(results) == "segmentation" else results
    samples = holder.get("samples") if isinstance(holder, dict) else None
    return samples if isinstance(samples, dict) else {}


def _ids(results: dict[str, Any]) -> list | None:
    ids = _samples(results).get("ids")
    return list(ids) if isinstance(ids, list) else None


def pairing(a: dict[str, Any], b: dict[str, Any], allow_different_data: bool = False) -> dict[str, Any]:
    """Whether A and B hold the same images: same data fingerprint and the same sample ids
    (B's order mapped onto A's). Different images are refused unless allowed."""
    ids_a, ids_b = _ids(a), _ids(b)
    sha_a, sha_b = ((r.get("data") or {}).get("sha256") for r in (a, b))
    have_ids = ids_a is not None and ids_b is not None
    same_ids = have_ids and len(set(ids_a)) == len(ids_a) and sorted(map(str, ids_a)) == sorted(map(str, ids_b))
    if sha_a == sha_b and same_ids:
        where = {str(i): k for k, i in enumerate(ids_b)}
        return {"paired": True, "per_image": True, "order_b": [where[str(i)] for i in ids_a],
                "basis": f"paired: the same {len(ids_a):,} images in both audits (data sha256 and sample ids match)"}
    if sha_a == sha_b and sha_a is not None and not have_ids:
        return {"paired": True, "per_image": False, "order_b": None,
                "basis": "same data fingerprint, but no per-image results to pair (an older results.json): "
                         "rows compare point estimates only"}
    why = ("the data fingerprints differ" if sha_a != sha_b else
           "the sample ids differ (another --limit, --split or seed?)" if have_ids else "no sample ids to match")
    if not allow_different_data:
        raise UsageError(f"A and B audit different images ({why}): a paired comparison needs the same images; "
                         "pass --allow-different-data for an unpaired one")
    return {"paired": False, "per_image": have_ids, "order_b": None,
            "basis": f"UNPAIRED: A and B audit different images ({why}); compared with unpaired tests, "
                     "which are less sensitive and assume the two image sets come from the same population"}


def _reorder(values: Any, order: np.ndarray) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)[order]


class _Images:
    """Per-image results of one audit, in the comparison's common image order."""

    def __init__(self, results: dict[str, Any], order: list[int] | None):
        self.results = results
        self.segmentation = task_of(results) == "segmentation"
        self.samples = _samples(results)
        n = len(self.samples.get("ids") or [])
        self.order = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
        self.position = np.empty(n, dtype=np.int64)
        self.position[self.order] = np.arange(n)  # audit index -> common index

    def values(self, raw: Any) -> np.ndarray:
        return _reorder(raw, self.order)

    # classification
    def labels(self) -> np.ndarray:
        return self.values(self.samples["labels"]).astype(np.int64)

    def clean_pred(self) -> np.ndarray:
        return self.values(self.samples["clean_pred"]).astype(np.int64)

    def predictions(self, eps_255: float | None, entries: list[dict[str, Any]] | None = None) -> np.ndarray:
        """Predictions under attack: a sample broken at several eps takes its prediction from
        the largest eps <= ``eps_255`` (the engine's worst-case rule)."""
        preds = self.clean_pred()
        if eps_255 is None:
            return preds
        if entries is None:
            entries = [e for e in self.results.get("attacks", []) if e["eps_255"] <= eps_255 + 1e-9]
        seen = np.zeros(len(preds), dtype=bool)
        for entry in sorted(entries, key=lambda e: -e["eps_255"]):
            for i, p in zip(entry["samples"]["broken"], entry["samples"]["adv_pred"]):
                j = self.position[int(i)]
                if not seen[j]:
                    seen[j], preds[j] = True, p
        return preds

    def attack_entries(self, index: int) -> list[dict[str, Any]]:
        """The entries whose breaks an attack entry's robust accuracy counts: its own with
        --independent; in a cascade, every entry at a smaller eps and those up to it at its eps."""
        attacks = self.results.get("attacks", [])
        entry = attacks[index]
        if (self.results.get("config") or {}).get("mode") == "independent":
            return [entry]
        return [e for k, e in enumerate(attacks) if e["eps_255"] < entry["eps_255"] - 1e-9
                or (abs(e["eps_255"] - entry["eps_255"]) < 1e-9 and k <= index)]


def _statistic(measure: Measure) -> tuple[Callable[[np.ndarray], float], int]:
    kind = measure[0]
    if kind == "mean":
        v = measure[1]
        return (lambda i: float(np.nanmean(v[i])) if np.isfinite(v[i]).any() else float("nan")), len(v)
    if kind == "auroc":
        scores, positive = measure[1], measure[2]
        return (lambda i: auroc(scores[i], positive[i])), len(scores)
    hit, denominator = measure[1], measure[2]
    return (lambda i: float(hit[i][denominator[i]].mean()) if denominator[i].any() else float("nan")), len(hit)


def _full_value(measure: Measure) -> float:
    if measure[0] == "proportion":
        return float(np.mean(measure[1])) if len(measure[1]) else float("nan")
    statistic, n = _statistic(measure)
    return statistic(np.arange(n))


def paired_test(ma: Measure, mb: Measure, paired: bool) -> dict[str, Any]:
    """The test of one row: McNemar (or the unpaired z-test) for proportions, a bootstrap
    for everything else; ``ci95`` is the interval of B - A."""
    if ma[0] == "proportion":
        a, b = np.asarray(ma[1], dtype=bool), np.asarray(mb[1], dtype=bool)
        if paired:
            return {**mcnemar_exact(a, b), "ci95": paired_difference_ci(a, b), "ci_method": "Newcombe hybrid score"}
        return {**unpaired_proportion_test(int(a.sum()), len(a), int(b.sum()), len(b)),
                "ci_method": "Newcombe hybrid score (unpaired)"}
    (stat_a, n_a), (stat_b, n_b) = _statistic(ma), _statistic(mb)
    out = bootstrap_difference(stat_a, stat_b, n_a, n_b, resamples=RESAMPLES, seed=SEED, paired=paired)
    return {**out, "ci_method": "bootstrap percentile"}


# ------------------------------------------------------------------- rows
def _row(metric: str, label: str, eps: float | None, a: Any, b: Any, a_ci: Any, b_ci: Any, margin: float,
         measures: tuple[Measure | None, Measure | None] | None = None, paired: bool = True) -> dict[str, Any]:
    a, b = number_or_none(a), number_or_none(b)  # text in a results.json is a missing value, not a crash
    delta = None if a is None or b is None else b - a
    worse_sign = 1 if metric in LOWER_IS_BETTER else -1
    test, untested = None, None
    if delta is not None and measures and measures[0] is not None and measures[1] is not None:
        # the per-image data must reproduce the recorded numbers, or the test would be about something else
        if all(abs(_full_value(m) - v) < 1e-4 for m, v in zip(measures, (a, b))):
            test = paired_test(measures[0], measures[1], paired)
        else:
            untested = "the per-image results do not reproduce the recorded numbers"
    elif delta is not None:
        untested = "no per-image results for this number"
    beyond = delta is not None and worse_sign * delta > margin + 1e-12
    if delta is None:
        status = "missing"
    elif abs(delta) < 1e-12:
        status = "same"
    elif test is None or test.get("p_value") is None:
        status = "worse (untested)" if beyond else "untested"
    elif test["p_value"] >= ALPHA:
        status = "not significant"
    elif worse_sign * delta > 0:
        status = "worse" if beyond else "worse, within margin"
    else:
        status = "better" if -worse_sign * delta > 0 else "not significant"
    return {"metric": metric, "label": label, "eps_255": eps, "a": a, "b": b, "delta": delta,
            "a_ci95": a_ci, "b_ci95": b_ci, "test": test, "untested": untested,
            "p_value": (test or {}).get("p_value"), "delta_ci95": (test or {}).get("ci95"),
            "status": status, "regression": status in ("worse", "worse (untested)")}


def _value(block: Any) -> tuple[float | None, list | None]:
    if isinstance(block, dict):
        return block.get("value"), block.get("ci95")
    return None, None


def _by_eps(rows: list[dict[str, Any]] | None) -> dict[float, dict[str, Any]]:
    return {float(r["eps_255"]): r for r in rows or []}


def task_of(results: dict[str, Any]) -> str:
    return (results.get("config") or {}).get("task") or (results.get("model") or {}).get("task") or "classification"


def _both(images: tuple[_Images, _Images] | None,
          get: Callable[[_Images], Measure | None]) -> tuple[Measure | None, Measure | None] | None:
    """Each audit's measure for one row; None where an audit lacks the per-image data."""
    if images is None:
        return None
    out = []
    for side in images:
        try:
            out.append(get(side))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):  # absent or malformed
            out.append(None)
    return out[0], out[1]


def _segmentation_rows(a: dict[str, Any], b: dict[str, Any], margin: float,
                       images: tuple[_Images, _Images] | None, paired: bool) -> list[dict[str, Any]]:
    rows = []
    ca, cb = a.get("clean") or {}, b.get("clean") or {}
    for metric in ("dice", "iou"):
        rows.append(_row(metric, f"{metric.replace('iou', 'IoU').replace('dice', 'Dice')} (clean)", None,
                         ca.get(metric), cb.get(metric), None, None, margin,
                         _both(images, lambda s, m=metric: ("mean", s.values(s.samples[m]))), paired))
    wa, wb = _by_eps(a.get("worst_case")), _by_eps(b.get("worst_case"))
    for eps in sorted(set(wa) & set(wb)):
        def worst(s: _Images, eps: float = eps) -> Measure:
            return ("mean", s.values(_by_eps(s.results["worst_case"])[eps]["samples"]["dice"]))

        def missed_any(s: _Images, eps: float = eps) -> Measure:
            table = np.array([s.values(e["samples"]["missed"]) for e in s.results["attacks"]
                              if e["eps_255"] <= eps + 1e-9])
            lesion = ~np.isnan(table).all(axis=0)  # images without a lesion have no "missed"
            return ("rate", np.nan_to_num(table, nan=0.0).max(axis=0) > 0, lesion)
        rows.append(_row("worst_case", f"worst-case Dice @ {eps:g}/255", eps, wa[eps].get("dice"), wb[eps].get("dice"),
                         None, None, margin, _both(images, worst), paired))
        rows.append(_row("lesion_missed", f"lesion missed by any attack @ {eps:g}/255", eps,
                         wa[eps].get("missed_rate_any"), wb[eps].get("missed_rate_any"), None, None, margin,
                         _both(images, missed_any), paired))
    aa = {(e["attack"], float(e["eps_255"])): e for e in a.get("attacks", [])}
    ab = {(e["attack"], float(e["eps_255"])): e for e in b.get("attacks", [])}
    for key in sorted(set(aa) & set(ab), key=lambda k: (k[1], k[0])):
        def attack(s: _Images, key: tuple = key) -> Measure:
            entry = next(e for e in s.results["attacks"] if (e["attack"], float(e["eps_255"])) == key)
            return ("mean", s.values(entry["samples"]["dice"]))
        rows.append(_row("attack", f"{key[0]} Dice @ {key[1]:g}/255", key[1], aa[key].get("dice"), ab[key].get("dice"),
                         None, None, margin, _both(images, attack), paired))
    return rows


def _correct_under(s: _Images, eps: float | None, entries: list[dict[str, Any]] | None = None) -> Measure:
    labels = s.labels()
    correct = s.clean_pred() == labels
    if eps is not None:  # broken = misclassified by an attack that only attacks correct samples
        correct &= s.predictions(eps, entries) == labels
    return ("proportion", correct)


def _clinical_measure(s: _Images, metric: str, eps: float | None) -> Measure:
    pos = int(s.results["clinical"]["positive_index"])
    labels, preds = s.labels(), s.predictions(eps)
    if metric == "sensitivity":
        return ("proportion", (preds == pos)[labels == pos])
    if metric == "specificity":
        return ("proportion", (preds != pos)[labels != pos])
    if metric == "auroc":
        probs = s.samples["clean_probs"] if eps is None else None
        scores = (s.values([p[pos] for p in probs]) if probs is not None
                  else s.values(s.samples["adversarial_positive_scores"][f"{eps:g}"]))
        return ("auroc", scores, labels == pos)
    clean = s.clean_pred()
    if metric == "missed_disease":  # true positives now called non-positive
        return ("rate", preds != pos, (labels == pos) & (clean == pos))
    return ("rate", preds == pos, (labels != pos) & (clean == labels))  # false alarm


def _classification_rows(a: dict[str, Any], b: dict[str, Any], margin: float,
                         images: tuple[_Images, _Images] | None, paired: bool) -> list[dict[str, Any]]:
    rows = []
    ca, cb = a.get("clean") or {}, b.get("clean") or {}
    rows.append(_row("clean", "clean accuracy", None, ca.get("accuracy"), cb.get("accuracy"), ca.get("ci95"),
                     cb.get("ci95"), margin, _both(images, lambda s: _correct_under(s, None)), paired))
    wa, wb = _by_eps(a.get("worst_case")), _by_eps(b.get("worst_case"))
    for eps in sorted(set(wa) & set(wb)):
        rows.append(_row("worst_case", f"worst case @ {eps:g}/255", eps, wa[eps]["robust_accuracy"],
                         wb[eps]["robust_accuracy"], wa[eps].get("ci95"), wb[eps].get("ci95"), margin,
                         _both(images, lambda s, eps=eps: _correct_under(s, eps)), paired))
    aa = {(e["attack"], float(e["eps_255"])): e for e in a.get("attacks", [])}
    ab = {(e["attack"], float(e["eps_255"])): e for e in b.get("attacks", [])}
    for key in sorted(set(aa) & set(ab), key=lambda k: (k[1], k[0])):
        def attack(s: _Images, key: tuple = key) -> Measure:
            index = next(k for k, e in enumerate(s.results["attacks"]) if (e["attack"], float(e["eps_255"])) == key)
            return _correct_under(s, key[1], s.attack_entries(index))
        rows.append(_row("attack", f"{key[0]} @ {key[1]:g}/255", key[1], aa[key]["robust_accuracy"],
                         ab[key]["robust_accuracy"], aa[key].get("ci95"), ab[key].get("ci95"), margin,
                         _both(images, attack), paired))
    kl_a, kl_b = a.get("clinical") or {}, b.get("clinical") or {}
    if kl_a.get("positive_class") is None or kl_a.get("positive_class") != kl_b.get("positive_class"):
        return rows
    blocks = [(None, kl_a.get("clean") or {}, kl_b.get("clean") or {}, ("sensitivity", "specificity", "auroc"))]
    ka, kb = _by_eps(kl_a.get("worst_case")), _by_eps(kl_b.get("worst_case"))
    blocks += [(eps, ka[eps], kb[eps], ("sensitivity", "specificity", "auroc", "missed_disease", "false_alarm"))
               for eps in sorted(set(ka) & set(kb))]
    for eps, block_a, block_b, metrics in blocks:
        for metric in metrics:
            (va, cia), (vb, cib) = _value(block_a.get(metric)), _value(block_b.get(metric))
            if va is None and vb is None:
                continue
            label = f"{metric} (clean)" if eps is None else f"{metric.replace('_', ' ')} @ {eps:g}/255"
            rows.append(_row(metric, label, eps, va, vb, cia, cib, margin,
                             _both(images, lambda s, m=metric, e=eps: _clinical_measure(s, m, e)), paired))
    return rows


def compare_results(a: dict[str, Any], b: dict[str, Any], margin: float = 0.0,
                    hardening_log: dict[str, Any] | None = None,
                    allow_different_data: bool = False) -> dict[str, Any]:
    """Every comparable number of two results dicts, each with its test; ``regressions``
    lists where B is significantly worse by more than ``margin``.

    With ``hardening_log`` (the ``medaudit harden`` log of B's model), the comparison also
    states the measured evidence for that defense: A is the model before, B after."""
    if task_of(a) != task_of(b):
        raise UsageError(f"cannot compare a {task_of(a)} audit (A) with a {task_of(b)} audit (B)")
    pair = pairing(a, b, allow_different_data)
    images = (_Images(a, None), _Images(b, pair["order_b"])) if pair["per_image"] else None
    build = _segmentation_rows if task_of(a) == "segmentation" else _classification_rows
    rows = build(a, b, margin, images, pair["paired"])
    out = _finish(a, b, margin, rows, hardening_log)
    out["pairing"] = {k: v for k, v in pair.items() if k != "order_b"}
    return out


def _finish(a: dict[str, Any], b: dict[str, Any], margin: float, rows: list[dict[str, Any]],
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
        "task": task_of(a), "margin": margin, "alpha": ALPHA, "rule": (
            f"a row is a regression when B is worse by more than the margin ({margin:g}) and its test is significant "
            f"at alpha {ALPHA:g}"), "rows": rows, "checks": checks, "notes": notes,
        "regressions": regressions, "verdict": "worse" if regressions else "not worse",
        "hardening": evidence_from_audits(a, b, hardening_log) if hardening_log is not None else None,
    }

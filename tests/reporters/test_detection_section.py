"""The detection table with three detectors (Mahalanobis, KD+BU, LID), each with its
adaptive row, in HTML and PDF; hostile values stay text."""

from __future__ import annotations

import copy

import pytest

from auditor.interfaces import ReportOptions
from auditor.reporting.environment import render_html
from tests.reporters.conftest import load_results


def _report(name: str, auroc: float, evasion: float) -> dict:
    return {"detector": {"name": name, "reference": f"ref of {name}", "layer": "penultimate"},
            "n_clean_correct": 20, "n": 24, "fpr_target": 0.05, "threshold": 1.5,
            "attacks": [{"attack": "pgd", "eps_255": 4.0, "n": 20, "n_successful": 18, "auroc": auroc,
                         "tpr_at_5fpr": 0.5, "undetected_success_rate": 0.45}],
            "adaptive": [{"eps_255": 4.0, "n": 20, "n_successful": 19, "auroc": 0.31, "tpr_at_5fpr": 0.05,
                          "undetected_success_rate": evasion, "evasion_rate": evasion}]}


def _with_detection(*others: dict) -> dict:
    results = copy.deepcopy(load_results())
    results["detection"] = {**_report("mahalanobis", 0.91, 0.85), "fit": {"n": 100, "split": "train"},
                            "detectors": ["mahalanobis"] + [o["detector"]["name"] for o in others],
                            "other_detectors": list(others)}
    return results


def test_three_detectors_share_one_table_with_an_adaptive_row_each():
    html = render_html(_with_detection(_report("kd-bu", 0.24, 0.95), _report("lid", 0.88, 0.40)))
    table = html[html.index('<table class="detection">'):]
    table = table[: table.index("</table>")]
    assert table.count('<tr class="adaptive">') == 3 and "<th>Detector</th>" in table
    assert "0.91" in table and "0.24" in table and "0.88" in table
    assert "kd-bu detector evades it on up to 95.0%" in html and "lid detector evades it on up to 40.0%" in html


def test_hostile_detector_values_are_escaped_and_bad_shapes_ignored():
    hostile = _report("<script>alert(1)</script>", 0.5, 0.5)
    html = render_html(_with_detection(hostile))
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    results = _with_detection()
    results["detection"]["other_detectors"] = "not a list"
    html = render_html(results)
    assert html.count('<tr class="adaptive">') == 1 and "<th>Detector</th>" not in html


def test_the_detection_table_reaches_the_pdf(tmp_path):
    pypdf = pytest.importorskip("pypdf")
    from plugins.reporters.pdf import PdfReporter

    path = PdfReporter().render(_with_detection(_report("kd-bu", 0.24, 0.95), _report("lid", 0.88, 0.40)),
                                tmp_path, ReportOptions())
    text = " ".join(" ".join(page.extract_text() or "" for page in pypdf.PdfReader(str(path)).pages).split())
    assert "kd-bu" in text and "lid" in text and "Adversarial-example detector evaluated in this audit" in text

"""A report whose validity checks failed or warned says so on the cover before any verdict,
marks the summary's numbers unreliable and recommends fixing the evaluation; a report
without a positive class says --positive-class is needed (issue 14, items 3 and 4)."""

from __future__ import annotations

import re
from typing import Any

from auditor.reporting.environment import render_html
from tests.reporters.conftest import RENDERED_AT

BASELINE = "Keep this report as the robustness baseline"


def text(html: str) -> str:
    """What a reader sees: tags and styles gone, whitespace collapsed."""
    html = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def cover(html: str) -> str:
    return text(html[html.index('id="cover"'):html.index("</header>")])


def _with_check(results: dict[str, Any], key: str, status: str) -> dict[str, Any]:
    for item in results["checks"]["items"]:
        if item["key"] == key:
            item["status"] = status
    results["checks"]["verdict"] = status
    return results


def test_a_passing_audit_keeps_its_recommendation(results):
    html = render_html(results, rendered_at=RENDERED_AT)
    assert "EVALUATION NOT VALID" not in html and "UNRELIABLE" not in html


def test_a_failed_check_leads_the_cover_and_replaces_the_recommendation(results):
    html = render_html(_with_check(results, "large-eps", "fail"), rendered_at=RENDERED_AT)
    page = cover(html)
    assert page.index("EVALUATION NOT VALID") < page.index("Verdict against acceptance criteria")
    assert "1 validity check failed (" in page
    summary = text(html[html.index('<section id="summary"'):html.index('<section id="scope"')])
    assert summary.startswith("Executive summary UNRELIABLE:")
    assert "Fix the evaluation before drawing any conclusion" in summary
    assert BASELINE not in text(html)
    assert 'class="headline unreliable"' in html


def test_a_warning_is_enough_to_mark_the_numbers(results):
    html = render_html(_with_check(results, "gradients", "warn"), rendered_at=RENDERED_AT)
    assert "EVALUATION NOT VALID" in cover(html) and "1 warned (" in cover(html)
    assert "raised warnings in its validity checks" in text(html)


def test_no_positive_class_is_said_on_the_cover(results):
    results["clinical"] = {"positive_class": None, "positive_index": None, "source": None,
                           "needs_positive_class": True,
                           "note": "no clinical metrics: '0' is not among the classes; pass --positive-class NAME"}
    page = cover(render_html(results, rendered_at=RENDERED_AT))
    assert "NO CLINICAL METRICS" in page and "--positive-class NAME" in page

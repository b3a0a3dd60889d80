"""The precision the sample bought (item 8 of issue 14): computed by the engine into
results["summary"]["sample_size"], rendered in the executive summary."""

from __future__ import annotations

import re

import pytest

from auditor.engine.summary import summarise
from auditor.reporting.environment import render_html
from auditor.stats import proportion_ci, wilson_n_for_half_width


def test_summary_records_ci_width_and_images_for_five_points(results):
    size = summarise(results)["sample_size"]
    clean, *worst = size["rows"]
    assert size["target_half_width"] == 0.05 and "Wilson" in size["method"]
    assert (clean["label"], clean["n"], clean["eps_255"]) == ("clean accuracy", 120, None)
    low, high = proportion_ci(91, 120)  # 0.758 of 120 images
    assert clean["ci95"] == pytest.approx([low, high]) and clean["ci_width"] == pytest.approx(high - low)
    assert clean["n_for_target"] == wilson_n_for_half_width(91 / 120) and not clean["target_reached"]
    assert [w["eps_255"] for w in worst] == [2, 4, 6, 8]
    half = worst[1]  # 0.5 at 4/255: the widest interval, the most images needed
    assert half["n_for_target"] == max(r["n_for_target"] for r in size["rows"]) == 381
    assert half["half_width"] == pytest.approx((proportion_ci(60, 120)[1] - proportion_ci(60, 120)[0]) / 2)


def test_report_states_the_precision_and_the_images_needed(results):
    results["summary"] = summarise(results)
    html = render_html(results)
    table = re.search(r'<table class="sample-size">.*?</table>', html, re.S)
    assert table, "no sample-size table in the executive summary"
    rows = re.findall(r"<tr><td>(.*?)</td>.*?<td class=\"num\">(.*?)</td><td class=\"num\">(.*?)</td>"
                      r"<td class=\"num\">(.*?)</td><td class=\"num\">(.*?)</td></tr>", table.group(0), re.S)
    assert [r[0] for r in rows][:2] == ["clean accuracy", "worst case at 2/255"]
    assert rows[0][1] == "75.8%" and rows[0][4] == f"{wilson_n_for_half_width(91 / 120):,}"
    assert rows[2][2] == f"{100 * proportion_ci(60, 120)[0]:.1f}% to {100 * proportion_ci(60, 120)[1]:.1f}%"
    assert rows[2][4] == "381"
    assert "±5%" in html and "Wilson interval" in html

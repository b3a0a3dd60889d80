"""Gates on confidence bounds (``:lower`` / ``:upper``) and gates the sample cannot decide."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from auditor.errors import UsageError
from auditor.gates import evaluate_gates, junit_xml, parse_criteria, parse_criterion
from auditor.stats import proportion_ci, wilson_n_to_exclude


def _results(k: int, n: int) -> dict:
    """A minimal results dict: clean accuracy and worst case at 4/255 of k correct out of n."""
    ci = list(proportion_ci(k, n))
    return {"clean": {"accuracy": 0.9, "n": n, "ci95": list(proportion_ci(round(0.9 * n), n))},
            "worst_case": [{"eps_255": 4.0, "robust_accuracy": k / n, "n": n, "ci95": ci, "ci_method": "wilson"}],
            "clinical": {"worst_case": [{"eps_255": 4.0, "missed_disease": {
                "value": 0.1, "k": 5, "n": 50, "ci95": list(proportion_ci(5, 50)), "ci_method": "wilson"}}]},
            "attacks": [], "config": {"mode": "cascade"}}


def test_bounds_parse_and_must_be_the_pessimistic_end():
    c = parse_criterion("worst_case@4=0.5:lower")
    assert (c.metric, c.op, c.threshold, c.bound, c.label) == ("worst_case", ">=", 0.5, "lower",
                                                                 "worst_case@4>=0.5:lower")
    assert parse_criterion("missed_disease@4=20%:upper").bound == "upper"
    assert parse_criterion("clean=0.8").bound == "point"
    for text, message in (("worst_case@4=0.5:upper", "gated on the lower bound"),
                          ("missed_disease@4=0.2:lower", "gated on the upper bound"),
                          ("worst_case@4=0.5:median", "not a bound")):
        with pytest.raises(UsageError, match=message):
            parse_criterion(text)


def test_lower_bound_gate_fails_where_the_point_estimate_passes():
    results = _results(55, 100)  # 0.55, Wilson 95% interval about 0.452-0.644
    low = proportion_ci(55, 100)[0]
    gates = evaluate_gates(parse_criteria(["worst_case@4=0.5", "worst_case@4=0.5:lower", "worst_case@4=0.4:lower"]),
                           results)
    point, lower, clears = gates["criteria"]
    assert point["passed"] and not lower["passed"] and clears["passed"]
    assert lower["compared"] == pytest.approx(low) and lower["bound"] == "lower" and lower["ci_method"] == "wilson"
    assert f"lower end of its 95% Wilson interval is {low:.3f}, below 0.500" in lower["message"]
    upper = evaluate_gates(parse_criteria(["missed_disease@4=0.15:upper"]), results)["criteria"][0]
    assert not upper["passed"] and upper["compared"] == pytest.approx(proportion_ci(5, 50)[1])


def test_an_undecided_point_gate_states_the_n_that_would_decide():
    gates = evaluate_gates(parse_criteria(["worst_case@4=0.5", "worst_case@4=0.3"]), _results(55, 100))
    straddles, clear = gates["criteria"]
    needed = wilson_n_to_exclude(0.55, 0.5)
    assert straddles["passed"] and straddles["undecided"] == {"n": 100, "n_needed": needed} and needed == 385
    assert "the sample cannot decide" in straddles["message"] and "385 images would" in straddles["message"]
    assert clear["undecided"] is None and "cannot decide" not in clear["message"]
    # ... and the JUnit message carries it (CI shows it without opening results.json)
    failing = evaluate_gates(parse_criteria(["worst_case@4=0.56"]), _results(55, 100))
    root = ET.fromstring(junit_xml(failing).split("\n", 1)[1])
    failure = root.find("testsuite/testcase/failure")
    expected = wilson_n_to_exclude(0.55, 0.56)
    assert f"{expected:,} images would" in failure.get("message")


@pytest.mark.parametrize("p, threshold", [(0.55, 0.5), (0.3, 0.5), (0.9, 0.8), (0.02, 0.05), (0.99, 0.95),
                                          (0.5, 0.0), (0.6, 0.61)])
def test_wilson_n_to_exclude_matches_a_direct_search(p, threshold):
    def excludes(n: int) -> bool:
        low, high = proportion_ci(p * n, n)  # the interval at the observed proportion
        return not low <= threshold <= high
    n = 1
    while not excludes(n):
        n += 1
    assert wilson_n_to_exclude(p, threshold) == n
    assert wilson_n_to_exclude(0.5, 0.5) is None

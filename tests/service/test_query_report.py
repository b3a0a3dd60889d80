"""The report's 'Audited through queries only' table, rendered from results.json alone: what
the service said about itself stays text, numbers that are not numbers read n/a, a swapped
model is said in words, and a report without the block has no such table."""

from __future__ import annotations

import copy

from auditor.reporting.environment import render_html
from tests.reporters.conftest import load_results


def with_block(**overrides) -> dict:
    results = copy.deepcopy(load_results())
    block = {
        "kind": "inference service", "outputs": "logits", "access": ["scores", "labels"],
        "identity": {"endpoint": "http://10.0.0.5:8080/v2/models/xray", "model_name": "xray",
                     "model_versions": ["3"], "server_name": "kserve", "server_version": "0.21.0"},
        "skipped_attacks": [{"attack": "pgd", "reason": "needs input gradients (white-box); the inference "
                             "service answers queries only"}],
        "fingerprint": {"start": {"sha256": "a" * 64}, "end": {"sha256": "a" * 64}, "match": True, "resumed": []},
        "usage": {"images": 2478, "requests": 236, "retries": 4},
        "queries": {"total_images": 2478, "attacks_images": 2440, "per_sample_mean": 304.97, "max_queries": 100000},
    }
    block.update(overrides)
    results["query_target"] = block
    return results


def test_the_query_table_names_the_service_the_traffic_and_what_did_not_run():
    html = render_html(with_block())
    table = html[html.index('<table class="query-target">'):]
    table = table[: table.index("</table>")]
    assert "2,478" in table and "2,440" in table and "305.0 per attacked image" in table and "100,000" in table
    assert "236" in table and "4 retried" in table and "same at the end" in table and "kserve" in table
    assert "needs input gradients" in html and "Audited through queries only" in html


def test_a_swapped_model_is_said_in_words():
    html = render_html(with_block(fingerprint={"start": {"sha256": "a" * 64}, "end": {"sha256": "b" * 64},
                                               "match": False}))
    assert "the model was swapped during the audit" in html and "b" * 64 in html


def test_hostile_service_text_is_escaped_and_bad_numbers_read_na():
    hostile = "<script>alert(1)</script>"
    html = render_html(with_block(identity={"model_name": hostile, "platform": ["<img src=x onerror=alert(2)>"]},
                                  skipped_attacks=[{"attack": hostile, "reason": hostile}, "not a dict"],
                                  queries={"total_images": "lots", "attacks_images": None, "per_sample_mean": True},
                                  usage="nope", fingerprint=[1, 2]))
    assert hostile not in html and "<img src=x" not in html and "&lt;script&gt;" in html
    table = html[html.index('<table class="query-target">'):]
    assert "n/a" in table[: table.index("</table>")]


def test_no_block_no_table():
    assert '<table class="query-target">' not in render_html(copy.deepcopy(load_results()))

"""Golden test: the HTML for a fixed results.json, so accidental changes show in review.

Regenerate after an intended change with ``MEDAUDIT_UPDATE_GOLDEN=1 pytest tests/reporters``
and review the diff of ``fixtures/report.golden.html``.

SVG bodies are replaced by a placeholder (their accessible name is kept): they depend on
the installed matplotlib, and the figures are checked by the plot and browser tests.
"""

from __future__ import annotations

import os
import re

from auditor.reporting.environment import render_html
from tests.reporters.conftest import FIXTURES, RENDERED_AT

GOLDEN = FIXTURES / "report.golden.html"


def normalise(html: str) -> str:
    html = re.sub(r"(<svg\b[^>]*?aria-label=\"[^\"]*\")[^>]*>.*?</svg>", r"\1>[svg]</svg>", html, flags=re.S)
    html = re.sub(r'(<time class="rendered">)[^<]*(</time>)', r"\1[timestamp]\2", html)
    return html


def test_html_matches_golden(results):
    html = normalise(render_html(results, rendered_at=RENDERED_AT))
    if os.environ.get("MEDAUDIT_UPDATE_GOLDEN") == "1" or not GOLDEN.exists():
        GOLDEN.write_text(html, encoding="utf-8")
    expected = GOLDEN.read_text(encoding="utf-8")
    assert html == expected, (
        "report.html changed; if intended, regenerate with MEDAUDIT_UPDATE_GOLDEN=1 and review the diff"
    )


def test_normalise_keeps_content_but_drops_volatile_parts():
    html = ('<svg role="img" aria-label="chart" width="1"><path d="M 0 0"/></svg>'
            '<time class="rendered">2030-01-01T00:00:00+00:00</time>')
    assert normalise(html) == '<svg role="img" aria-label="chart">[svg]</svg><time class="rendered">[timestamp]</time>'


def test_rendering_is_deterministic(results):
    assert render_html(results, rendered_at=RENDERED_AT) == render_html(results, rendered_at=RENDERED_AT)

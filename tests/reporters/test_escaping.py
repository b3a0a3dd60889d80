"""Hostile strings in results.json (class names, file names, plugin metadata) reach the
report as text, never as markup."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from markupsafe import escape

from auditor.reporting.environment import render_html
from tests.reporters.conftest import IMG, SCRIPT


def test_hostile_strings_are_escaped(hostile_results):
    html = render_html(hostile_results)
    assert "<script" not in html.lower()
    assert "<img src=x" not in html
    assert "onerror=alert(2)>" not in html.replace("onerror=alert(2)&gt;", "")
    assert str(escape(SCRIPT)) in html
    assert str(escape(IMG)) in html


def test_every_img_tag_is_a_data_uri(hostile_results):
    html = render_html(hostile_results)
    sources = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html)
    assert sources, "the gallery should still show the images that are valid"
    assert all(s.startswith("data:image/png;base64,") for s in sources)


def test_hostile_strings_escaped_inside_figures(hostile_results):
    html = render_html(hostile_results)
    svgs = re.findall(r"<svg\b.*?</svg>", html, flags=re.S)
    assert len(svgs) == 2
    for svg in svgs:
        assert "<script" not in svg
        assert "&lt;script&gt;" in svg  # the class/attack names are drawn as escaped text


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))


def test_no_element_or_attribute_is_injected(hostile_results):
    """Parsed as a browser would: no script-capable element, no event-handler attribute,
    no image outside the gallery's data: URIs."""
    parser = TagCollector()
    parser.feed(render_html(hostile_results))
    names = {tag for tag, _ in parser.tags}
    assert not names & {"script", "iframe", "object", "embed", "base", "link", "meta http-equiv"}
    attributes = {name for _, attrs in parser.tags for name, _ in attrs}
    assert not {a for a in attributes if a.startswith("on")}
    images = [dict(attrs).get("src", "") for tag, attrs in parser.tags if tag == "img"]
    assert images and all(src.startswith("data:image/png;base64,") for src in images)

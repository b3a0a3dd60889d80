"""Figures: accessible, colour-blind-safe, self-contained SVG."""

from __future__ import annotations

import re

from auditor.reporting import plots


def curves() -> list[plots.Curve]:
    return [plots.Curve("FGSM", [0, 2, 4], [0.8, 0.6, 0.5], [(0.7, 0.9), (0.5, 0.7), (0.4, 0.6)]),
            plots.Curve("PGD", [0, 2, 4], [0.8, 0.5, None], [(0.7, 0.9), None, None]),
            plots.Curve("worst case", [0, 2, 4], [0.8, 0.5, 0.3], emphasis=True)]


def test_svg_is_accessible_and_inline():
    svg = plots.accuracy_curves(curves(), alt='falls to 30% "at" 4/255 <b>', id_prefix="f1")
    assert svg.startswith('<svg role="img" aria-label="falls to 30% &#34;at&#34; 4/255 &lt;b&gt;"')
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<metadata" not in svg
    assert svg.rstrip().endswith("</svg>")


def test_svg_has_no_external_references():
    svg = plots.accuracy_curves(curves(), alt="x")
    refs = re.findall(r'(?:href="|url\()([^")]*)', svg)
    assert refs and all(r.startswith("#") for r in refs)


def test_ids_are_prefixed_per_figure():
    a = plots.accuracy_curves(curves(), alt="x", id_prefix="one")
    b = plots.accuracy_curves(curves(), alt="x", id_prefix="two")
    ids_a, ids_b = set(re.findall(r'id="([^"]+)"', a)), set(re.findall(r'id="([^"]+)"', b))
    assert ids_a and all(i.startswith("one-") for i in ids_a)
    assert not ids_a & ids_b
    for ref in re.findall(r'(?:href="#|url\(#)([^")]+)', a):
        assert ref in ids_a  # every reference still resolves


def test_okabe_ito_palette_and_text_as_text():
    svg = plots.accuracy_curves(curves(), alt="x")
    assert plots.OKABE_ITO[0].lower() in svg.lower() and plots.OKABE_ITO[1].lower() in svg.lower()
    assert ">FGSM<" in svg and ">worst case<" in svg  # labels are text, not glyph paths


def test_deterministic():
    assert plots.accuracy_curves(curves(), alt="x") == plots.accuracy_curves(curves(), alt="x")


def test_math_characters_in_names_are_literal():
    svg = plots.grouped_bars(["a$b$", "c_d"], [plots.BarGroup("clean", [0.5, 0.6])], alt="bars")
    assert "a$b$" in svg and "c_d" in svg


def test_grouped_bars_with_missing_values():
    groups = [plots.BarGroup("clean", [0.9, 0.5], [(0.8, 0.95), (0.4, 0.6)]),
              plots.BarGroup("2/255", [0.7, None], [(0.6, 0.8), None])]
    svg = plots.grouped_bars(["benign", "melanoma"], groups, alt="bars", id_prefix="b")
    assert ">benign<" in svg and ">melanoma<" in svg
